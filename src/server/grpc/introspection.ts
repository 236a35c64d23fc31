/**
 * What every bzutil gRPC port answers besides its own services, without credentials: the standard
 * health service (grpc.health.v1.Health, one status per service plus "" for the whole server) and
 * server reflection v1 and v1alpha, which list exactly the services of that port (including these
 * two), so grpcurl-style tools and load balancers work without our protos.
 *
 * Reflection needs protobuf descriptors. The servers encode with protobufjs static code, which keeps
 * none, so the descriptors are read once per process by @grpc/proto-loader from the same proto/
 * files the code is generated from (plus the health and reflection protos of their packages).
 */
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { type PackageDefinition, loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';

export const HEALTH_SERVICE = 'grpc.health.v1.Health';
export const REFLECTION_SERVICES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'] as const;

/** Health status of a port's services. */
export interface Introspection {
  /** Fully-qualified names of the services this port serves, sorted. */
  readonly services: readonly string[];
  /** SERVING for every service (and ""), or NOT_SERVING (draining before shutdown). */
  setServing(serving: boolean): void;
}

/** The fully-qualified name of a service definition (`build.bazel.remote.execution.v2.Execution`). */
export function serviceNameOf(definition: grpc.ServiceDefinition): string {
  const path = Object.values(definition)[0]!.path;
  return path.slice(1, path.lastIndexOf('/'));
}

/**
 * Adds Health and reflection to `server`, which serves `definitions`; every service starts SERVING.
 * Call after registering the port's own services and before binding.
 */
export function addIntrospection(server: grpc.Server, definitions: readonly grpc.ServiceDefinition[]): Introspection {
  const own = definitions.map(serviceNameOf);
  const services = [...new Set([...own, HEALTH_SERVICE, ...REFLECTION_SERVICES])].sort();
  const health = new HealthImplementation();
  health.addToServer(server);
  new ReflectionService(packageDefinition(), { services }).addToServer(server);
  const setServing = (serving: boolean) => {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    health.setStatus('', status);
    for (const name of services) health.setStatus(name, status);
  };
  setServing(true);
  return { services, setServing };
}

let loaded: PackageDefinition | undefined;

/** Descriptors of everything a port may serve, read once per process (~0.2 s). */
function packageDefinition(): PackageDefinition {
  if (loaded) return loaded;
  // src/server/grpc/ and dist/server/grpc/ are both three levels below the package root.
  const protoDir = join(dirname(fileURLToPath(import.meta.url)), '../../../proto');
  const ours = readdirSync(protoDir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.proto'));
  const reflectionProtoDir = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '../proto');
  loaded = loadSync([...ours, healthProtoPath, join(reflectionProtoDir, 'grpc/reflection/v1/reflection.proto'), join(reflectionProtoDir, 'grpc/reflection/v1alpha/reflection.proto')], {
    includeDirs: [protoDir, reflectionProtoDir],
  });
  return loaded;
}

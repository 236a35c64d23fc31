/**
 * What every bzutil gRPC port answers besides its own services, without credentials: the standard
 * health service (grpc.health.v1.Health, one status per service plus "" for the whole server) and
 * server reflection v1 and v1alpha, which list exactly the services of that port (including these
 * two), so grpcurl-style tools and load balancers work without our protos.
 *
 * Reflection needs protobuf descriptors. The servers encode with protobufjs static code, which keeps
 * none, so the descriptors are read by @grpc/proto-loader from the same proto/ files the code is
 * generated from (plus the health and reflection protos of their packages). That costs a few hundred
 * milliseconds and megabytes that few processes ever use, so it happens on the first reflection
 * call, not at start-up: the reflection services are registered with stand-ins that build the real
 * ones then.
 */
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import type { ReflectionService as ReflectionServiceType } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';

// CommonJS packages loaded on first use, from inside grpc-js callbacks, which are synchronous.
const requireLazily = createRequire(import.meta.url);

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
  addLazyReflection(server, services);
  const setServing = (serving: boolean) => {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    health.setStatus('', status);
    for (const name of services) health.setStatus(name, status);
  };
  setServing(true);
  return { services, setServing };
}

interface ServiceParts {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

/**
 * Registers reflection v1 and v1alpha on `server` (one bidi method each, ServerReflectionInfo) with
 * stand-ins: the first message a client sends builds the real ReflectionService for `services`,
 * and every call then goes to its handlers and (de)serializers.
 */
function addLazyReflection(server: grpc.Server, services: readonly string[]): void {
  let real: Map<string, ServiceParts> | undefined;
  const partsOf = (service: string): ServiceParts => {
    real ??= buildReflection(services);
    const parts = real.get(service);
    if (!parts) throw new Error(`@grpc/reflection did not register ${service}`);
    return parts;
  };
  for (const service of REFLECTION_SERVICES) {
    const method = () => partsOf(service).definition.ServerReflectionInfo!;
    const definition: grpc.ServiceDefinition = {
      ServerReflectionInfo: {
        path: `/${service}/ServerReflectionInfo`,
        requestStream: true,
        responseStream: true,
        originalName: 'serverReflectionInfo',
        requestSerialize: (value: unknown) => method().requestSerialize(value),
        requestDeserialize: (bytes: Buffer) => method().requestDeserialize(bytes),
        responseSerialize: (value: unknown) => method().responseSerialize(value),
        responseDeserialize: (bytes: Buffer) => method().responseDeserialize(bytes),
      },
    };
    server.addService(definition, {
      ServerReflectionInfo: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        const handler = partsOf(service).implementation.ServerReflectionInfo as grpc.handleBidiStreamingCall<unknown, unknown>;
        handler(call);
      },
    });
  }
}

/** The real reflection services, by name, as @grpc/reflection registers them (through its public addToServer). */
function buildReflection(services: readonly string[]): Map<string, ServiceParts> {
  const { ReflectionService } = requireLazily('@grpc/reflection') as { ReflectionService: typeof ReflectionServiceType };
  const parts = new Map<string, ServiceParts>();
  new ReflectionService(packageDefinition(), { services: [...services] }).addToServer({
    addService: (definition, implementation) => parts.set(serviceNameOf(definition), { definition, implementation }),
  });
  return parts;
}

let loaded: PackageDefinition | undefined;

/** Descriptors of everything a port may serve, read once per process (~0.2 s). */
function packageDefinition(): PackageDefinition {
  if (loaded) return loaded;
  const { loadSync } = requireLazily('@grpc/proto-loader') as typeof import('@grpc/proto-loader');
  // src/server/grpc/ and dist/server/grpc/ are both three levels below the package root.
  const protoDir = join(dirname(fileURLToPath(import.meta.url)), '../../../proto');
  const ours = readdirSync(protoDir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.proto'));
  const reflectionProtoDir = join(dirname(requireLazily.resolve('@grpc/reflection')), '../proto');
  loaded = loadSync([...ours, healthProtoPath, join(reflectionProtoDir, 'grpc/reflection/v1/reflection.proto'), join(reflectionProtoDir, 'grpc/reflection/v1alpha/reflection.proto')], {
    includeDirs: [protoDir, reflectionProtoDir],
  });
  return loaded;
}

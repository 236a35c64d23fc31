/**
 * What every bzutil gRPC port answers besides its own services, without credentials: the standard
 * health service (grpc.health.v1.Health, one status per service plus "" for the whole server) and
 * server reflection v1 and v1alpha, which list exactly the services of that port (including these
 * two), so grpcurl-style tools and load balancers work without our protos.
 *
 * Both come from packages that read .proto files with @grpc/proto-loader when loaded: reflection
 * needs the descriptors of every service (the servers encode with protobufjs static code, which
 * keeps none, so they are read from the same proto/ files the code is generated from). That costs a
 * few hundred milliseconds and several MiB that few processes ever use, so it happens on a port's
 * first health or reflection call, not at start-up: the services are registered with stand-ins
 * (addLazyService) that build the real ones then.
 */
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import type { ReflectionService as ReflectionServiceType } from '@grpc/reflection';
import type { HealthImplementation as HealthImplementationType, ServingStatus } from 'grpc-health-check';

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
  // The statuses live here until a health call builds the real service, which starts from them.
  const statuses = new Map<string, ServingStatus>();
  let health: HealthImplementationType | undefined;
  addLazyService(server, HEALTH_SERVICE, HEALTH_METHODS, () => {
    const { HealthImplementation } = requireLazily('grpc-health-check') as { HealthImplementation: typeof HealthImplementationType };
    health = new HealthImplementation(Object.fromEntries(statuses));
    return registeredBy((target) => health!.addToServer(target)).get(HEALTH_SERVICE);
  });
  let reflection: Map<string, ServiceParts> | undefined;
  for (const service of REFLECTION_SERVICES) {
    addLazyService(server, service, REFLECTION_METHODS, () => {
      reflection ??= buildReflection(services);
      return reflection.get(service);
    });
  }
  const setServing = (serving: boolean) => {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    for (const name of ['', ...services]) {
      statuses.set(name, status);
      health?.setStatus(name, status);
    }
  };
  setServing(true);
  return { services, setServing };
}

interface ServiceParts {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

/** A method of a service registered before its definition is loaded, as its .proto declares it. */
interface LazyMethod {
  name: string;
  /** The lowerCamelCase name proto-loader gives the handler (grpc-js looks up either). */
  originalName: string;
  requestStream: boolean;
  responseStream: boolean;
}

const HEALTH_METHODS: readonly LazyMethod[] = [
  { name: 'Check', originalName: 'check', requestStream: false, responseStream: false },
  { name: 'Watch', originalName: 'watch', requestStream: false, responseStream: true },
  { name: 'List', originalName: 'list', requestStream: false, responseStream: false },
];

const REFLECTION_METHODS: readonly LazyMethod[] = [{ name: 'ServerReflectionInfo', originalName: 'serverReflectionInfo', requestStream: true, responseStream: true }];

/**
 * Registers `service` on `server` with stand-ins for `methods`: the first call (when its first
 * message is decoded) runs `build`, and every call then goes to the real handlers and
 * (de)serializers that `build` returns.
 */
function addLazyService(server: grpc.Server, service: string, methods: readonly LazyMethod[], build: () => ServiceParts | undefined): void {
  let real: ServiceParts | undefined;
  const parts = (): ServiceParts => {
    real ??= build();
    if (!real) throw new Error(`Failed to load the ${service} service`);
    return real;
  };
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const m of methods) {
    const method = () => {
      const d = parts().definition[m.name];
      if (!d) throw new Error(`${service} has no method ${m.name}`);
      return d;
    };
    definition[m.name] = {
      path: `/${service}/${m.name}`,
      requestStream: m.requestStream,
      responseStream: m.responseStream,
      originalName: m.originalName,
      requestSerialize: (value: unknown) => method().requestSerialize(value),
      requestDeserialize: (bytes: Buffer) => method().requestDeserialize(bytes),
      responseSerialize: (value: unknown) => method().responseSerialize(value),
      responseDeserialize: (bytes: Buffer) => method().responseDeserialize(bytes),
    };
    implementation[m.name] = (...args: unknown[]) => {
      const handlers = parts().implementation;
      const handler = (handlers[m.name] ?? handlers[m.originalName]) as ((...a: unknown[]) => void) | undefined;
      if (!handler) throw new Error(`${service} has no handler for ${m.name}`);
      handler.apply(handlers, args);
    };
  }
  server.addService(definition, implementation);
}

/**
 * The services a package's `addToServer(server)` registers, by name: it is handed a stand-in
 * server that records them (both packages only call `addService` on it).
 */
function registeredBy(addToServer: (server: grpc.Server) => void): Map<string, ServiceParts> {
  const parts = new Map<string, ServiceParts>();
  const recorder: Pick<grpc.Server, 'addService'> = {
    addService: (definition, implementation) => void parts.set(serviceNameOf(definition), { definition, implementation }),
  };
  addToServer(recorder as grpc.Server);
  return parts;
}

/** The real reflection services for `services`, by name. */
function buildReflection(services: readonly string[]): Map<string, ServiceParts> {
  const { ReflectionService } = requireLazily('@grpc/reflection') as { ReflectionService: typeof ReflectionServiceType };
  const reflection = new ReflectionService(packageDefinition(), { services: [...services] });
  return registeredBy((target) => reflection.addToServer(target));
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
  const { protoPath: healthProtoPath } = requireLazily('grpc-health-check') as typeof import('grpc-health-check');
  loaded = loadSync([...ours, healthProtoPath, join(reflectionProtoDir, 'grpc/reflection/v1/reflection.proto'), join(reflectionProtoDir, 'grpc/reflection/v1alpha/reflection.proto')], {
    includeDirs: [protoDir, reflectionProtoDir],
  });
  return loaded;
}

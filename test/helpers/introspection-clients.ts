/**
 * Clients for what every bzutil gRPC port answers besides its own services: the standard health
 * check and server reflection (v1 and v1alpha), loaded from the protos their packages ship, as
 * grpcurl or a load balancer would call them.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';

const HealthClient = grpc.makeGenericClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health');

/** grpc.health.v1.Health/Check: the status name, or a rejected promise with the gRPC error. */
export function healthCheck(address: string, service: string): Promise<string> {
  const client = new HealthClient(address, grpc.credentials.createInsecure());
  return new Promise<string>((resolve, reject) => {
    (client as unknown as { check(req: unknown, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void }).check({ service }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res!.status);
    });
  });
}

const protoRoot = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '../proto');
const reflection = grpc.loadPackageDefinition(
  loadSync(['grpc/reflection/v1/reflection.proto', 'grpc/reflection/v1alpha/reflection.proto'], { includeDirs: [protoRoot], keepCase: true }),
) as unknown as { grpc: { reflection: Record<'v1' | 'v1alpha', { ServerReflection: grpc.ServiceClientConstructor }> } };

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** One request on a ServerReflectionInfo stream of `version`, and its one response. */
export function reflect(address: string, version: 'v1' | 'v1alpha', request: Record<string, unknown>): Promise<ReflectionResponse> {
  const client = new reflection.grpc.reflection[version].ServerReflection(address, grpc.credentials.createInsecure());
  return new Promise<ReflectionResponse>((resolve, reject) => {
    const call = (client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, ReflectionResponse> }).ServerReflectionInfo();
    call.on('data', (res: ReflectionResponse) => {
      resolve(res);
      call.end();
    });
    call.on('error', reject);
    call.on('end', () => client.close());
    call.write(request);
  });
}

/** The services reflection `version` lists at `address`, sorted. */
export async function listServices(address: string, version: 'v1' | 'v1alpha'): Promise<string[]> {
  const res = await reflect(address, version, { list_services: '*' });
  return res.list_services_response!.service.map((s) => s.name).sort();
}

/**
 * Starts a real apiserver in-process on 127.0.0.1:0 over a temporary storage directory and talks to
 * it with plain grpc-js clients built from our service definitions, the way any REAPI client would.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type ApiServer, type ApiServerConfig, startApiServer } from '../../../src/server/apiserver.js';
import { fromGrpcError } from '../../../src/lib/errors/grpc-status.js';
import { type Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { type bytestream, reapi } from '../../../src/lib/proto/index.js';
import {
  actionCacheService,
  byteStreamService,
  capabilitiesService,
  contentAddressableStorageService,
} from '../../../src/lib/proto/services.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { Digest } from '../../../src/lib/digest/digest.js';

const CapabilitiesClient = grpc.makeGenericClientConstructor(capabilitiesService, 'Capabilities');
const CasClient = grpc.makeGenericClientConstructor(contentAddressableStorageService, 'ContentAddressableStorage');
const ByteStreamClient = grpc.makeGenericClientConstructor(byteStreamService, 'ByteStream');
const ActionCacheClient = grpc.makeGenericClientConstructor(actionCacheService, 'ActionCache');

/** A grpc-js generic client: methods are looked up by their camelCase key. */
type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

export interface Harness {
  server: ApiServer;
  storageDir: string;
  capabilities: AnyClient;
  cas: AnyClient;
  byteStream: AnyClient;
  actionCache: AnyClient;
  close(): Promise<void>;
}

export async function startHarness(config: Partial<ApiServerConfig> = {}): Promise<Harness> {
  const storageDir = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-apiserver-'));
  let server: ApiServer;
  try {
    server = await startApiServer({ listenAddress: '127.0.0.1:0', storageDir, logger: silentLogger, ...config });
  } catch (err) {
    // Tests of start-up failures must not leave their storage behind.
    await fs.rm(storageDir, { recursive: true, force: true });
    throw err;
  }
  const target = `127.0.0.1:${server.port}`;
  const creds = grpc.credentials.createInsecure();
  const clients = {
    capabilities: new CapabilitiesClient(target, creds) as unknown as AnyClient,
    cas: new CasClient(target, creds) as unknown as AnyClient,
    byteStream: new ByteStreamClient(target, creds) as unknown as AnyClient,
    actionCache: new ActionCacheClient(target, creds) as unknown as AnyClient,
  };
  return {
    server,
    storageDir,
    ...clients,
    close: async () => {
      for (const c of Object.values(clients)) c.close();
      await server.close();
      await fs.rm(storageDir, { recursive: true, force: true });
    },
  };
}

/** Calls a unary method; rejects with the decoded StatusError. */
export function unary<Res>(client: AnyClient, method: string, request: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    client[method]!(request, (err: grpc.ServiceError | null, res: Res) => (err ? reject(fromGrpcError(err)) : resolve(res)));
  });
}

/** Awaits `promise`, expecting it to fail with `code`; returns the decoded error for further checks. */
export async function expectStatus(promise: Promise<unknown>, code: Code): Promise<StatusError> {
  let error: unknown;
  try {
    await promise;
  } catch (err) {
    error = err;
  }
  if (!(error instanceof StatusError)) throw new Error(`Expected a ${code} StatusError, got ${error === undefined ? 'success' : String(error)}`);
  if (error.code !== code) throw new Error(`Expected code ${code}, got ${error.codeName}: ${error.message}`);
  return error;
}

/** Reads a server stream to the end; rejects with the decoded StatusError. */
export function readStream<Res>(client: AnyClient, method: string, request: unknown): Promise<Res[]> {
  return new Promise((resolve, reject) => {
    const call = client[method]!(request) as grpc.ClientReadableStream<Res>;
    const messages: Res[] = [];
    call.on('data', (m: Res) => messages.push(m));
    call.on('error', (err: grpc.ServiceError) => reject(fromGrpcError(err)));
    call.on('end', () => resolve(messages));
  });
}

/** Opens a ByteStream Write call; the caller writes messages and ends (or cancels) it. */
export function openWrite(client: AnyClient): { call: grpc.ClientWritableStream<bytestream.IWriteRequest>; response: Promise<bytestream.WriteResponse> } {
  let call!: grpc.ClientWritableStream<bytestream.IWriteRequest>;
  const response = new Promise<bytestream.WriteResponse>((resolve, reject) => {
    call = client.write!((err: grpc.ServiceError | null, res: bytestream.WriteResponse) =>
      err ? reject(fromGrpcError(err)) : resolve(res),
    ) as grpc.ClientWritableStream<bytestream.IWriteRequest>;
  });
  return { call, response };
}

/** Writes `data` in `chunkSizeBytes` pieces (16 KiB like Bazel) with finish_write on the last one. */
export async function writeBlob(
  client: AnyClient,
  resourceName: string,
  data: Uint8Array,
  opts: { chunkSizeBytes?: number; startOffset?: number } = {},
): Promise<bytestream.WriteResponse> {
  const chunkSizeBytes = opts.chunkSizeBytes ?? 16 * 1024;
  const { call, response } = openWrite(client);
  const start = opts.startOffset ?? 0;
  let offset = start;
  do {
    const end = Math.min(offset + chunkSizeBytes, data.length);
    // Like Bazel: the resource name only on the first message, zero-valued fields left unset.
    call.write({
      ...(offset === start ? { resourceName } : {}),
      ...(offset > 0 ? { writeOffset: offset } : {}),
      data: data.subarray(offset, end),
      ...(end === data.length ? { finishWrite: true } : {}),
    });
    offset = end;
  } while (offset < data.length);
  call.end();
  return response;
}

/** Deterministic pseudo-random bytes, so that failures reproduce. */
export function pseudoRandomBytes(sizeBytes: number, seed = 1): Uint8Array {
  const out = new Uint8Array(sizeBytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < sizeBytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength))));
}

/** Uploads blobs with BatchUpdateBlobs and checks each succeeded. */
export async function uploadBlobs(h: Harness, blobs: readonly Uint8Array[], instanceName = ''): Promise<Digest[]> {
  const digests = blobs.map((b) => Digest.ofBytes(b, { instanceName }));
  const res = await unary<reapi.BatchUpdateBlobsResponse>(h.cas, 'batchUpdateBlobs', {
    instanceName,
    requests: blobs.map((data, i) => ({ digest: digests[i]!.toProto(), data })),
  });
  for (const r of res.responses) {
    if ((r.status?.code ?? 0) !== 0) throw new Error(`Failed to upload test blob: ${r.status?.message}`);
  }
  return digests;
}

/** Polls `condition` (bounded), for server-side effects of a client cancellation that have no reply. */
export async function eventually(condition: () => Promise<boolean>, what: string, attempts = 200): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`Timed out waiting until ${what}`);
}

export { reapi };

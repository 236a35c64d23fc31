import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobStoreActionCache } from '../../../src/lib/actioncache/action-cache.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { capabilitiesService, byteStreamService } from '../../../src/lib/proto/services.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { type StorageServices, registerStorageServices } from '../../../src/server/storage-services.js';
import { bindGrpcServer, createGrpcServer, shutdownGrpcServer } from '../../../src/server/grpc/server.js';
import { expectStatus, pseudoRandomBytes, reapi, unary, writeBlob } from './harness.js';

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** The scheduler's use: the storage services on a server it owns, with execution advertised. */
describe('registerStorageServices', () => {
  let server: grpc.Server | undefined;
  let services: StorageServices | undefined;
  const clients: grpc.Client[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    services?.close();
    if (server) await shutdownGrpcServer(server);
    server = undefined;
  });

  async function start(cas: MemoryBlobStore) {
    server = createGrpcServer();
    services = registerStorageServices(server, {
      contentAddressableStorage: cas,
      actionCache: new BlobStoreActionCache(new MemoryBlobStore({ maxSizeBytes: 1 << 20 })),
      logger: silentLogger,
      capabilities: { execution: { priorityRanges: [{ minPriority: -10, maxPriority: 10 }] } },
    });
    const port = await bindGrpcServer(server, '127.0.0.1:0');
    const make = (def: grpc.ServiceDefinition, name: string) => {
      const Ctor = grpc.makeGenericClientConstructor(def, name);
      const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      clients.push(client);
      return client as unknown as AnyClient;
    };
    return { capabilities: make(capabilitiesService, 'Capabilities'), byteStream: make(byteStreamService, 'ByteStream') };
  }

  it('advertises execution with every digest function (SHA-256 first and as the single field) and the configured priorities', async () => {
    const { capabilities } = await start(new MemoryBlobStore({ maxSizeBytes: 1 << 20 }));
    const caps = await unary<reapi.ServerCapabilities>(capabilities, 'getCapabilities', {});
    expect(caps.executionCapabilities).toMatchObject({
      digestFunction: reapi.DigestFunction.Value.SHA256,
      digestFunctions: [reapi.DigestFunction.Value.SHA256, reapi.DigestFunction.Value.SHA1, reapi.DigestFunction.Value.MD5, reapi.DigestFunction.Value.SHA384, reapi.DigestFunction.Value.SHA512, reapi.DigestFunction.Value.BLAKE3],
      execEnabled: true,
    });
    expect(caps.executionCapabilities?.executionPriorityCapabilities?.priorities).toEqual([
      reapi.PriorityCapabilities.PriorityRange.fromObject({ minPriority: -10, maxPriority: 10 }),
    ]);
    expect(caps.cacheCapabilities?.digestFunctions).toEqual([reapi.DigestFunction.Value.SHA256, reapi.DigestFunction.Value.SHA1, reapi.DigestFunction.Value.MD5, reapi.DigestFunction.Value.SHA384, reapi.DigestFunction.Value.SHA512, reapi.DigestFunction.Value.BLAKE3]);
  });

  it('verifies uploads even when given a store that does not verify', async () => {
    const cas = new MemoryBlobStore({ maxSizeBytes: 1 << 20 });
    const { byteStream } = await start(cas);
    const data = pseudoRandomBytes(3000, 31);
    const wrong = Digest.create('', 'sha256', Digest.ofBytes(pseudoRandomBytes(3000, 32)).hash, 3000);
    await expectStatus(writeBlob(byteStream, wrong.toByteStreamWritePath(randomUUID()), data), Code.INVALID_ARGUMENT);
    expect(await cas.findMissing([wrong])).toHaveLength(1);
    expect(services!.pendingUploadCount).toBe(0);
  });
});

/**
 * Test fixtures for the client: the real storage services over an in-memory CAS on 127.0.0.1:0, a
 * client interceptor that records which RPCs were made, and a TCP proxy that can cut a connection
 * mid-stream (to exercise resumable uploads and downloads the way a network failure would).
 */
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { BlobStoreActionCache } from '../../../src/lib/actioncache/action-cache.js';
import type { BlobStore } from '../../../src/lib/blobstore/blob-store.js';
import type { TransferCompressor } from '../../../src/lib/compression/compressor.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import type { CapabilitiesConfig } from '../../../src/server/services/capabilities-config.js';
import { registerStorageServices } from '../../../src/server/storage-services.js';
import { bindGrpcServer, createGrpcServer, shutdownGrpcServer } from '../../../src/server/grpc/server.js';

export interface StorageServer {
  address: string;
  contentAddressableStorage: BlobStore;
  close(): Promise<void>;
}

export async function startStorageServer(
  opts: { maxBatchTotalSizeBytes?: number; wrapCas?: (cas: BlobStore) => BlobStore; compressors?: readonly TransferCompressor[]; chunking?: CapabilitiesConfig['chunking'] } = {},
): Promise<StorageServer> {
  const memory = new MemoryBlobStore({ maxSizeBytes: 256 * 1024 * 1024 });
  const contentAddressableStorage = opts.wrapCas ? opts.wrapCas(memory) : memory;
  const server = createGrpcServer();
  const services = registerStorageServices(server, {
    contentAddressableStorage,
    actionCache: new BlobStoreActionCache(new MemoryBlobStore({ maxSizeBytes: 16 * 1024 * 1024 })),
    logger: silentLogger,
    maxBatchTotalSizeBytes: opts.maxBatchTotalSizeBytes,
    // The client's UpdateActionResult is exercised here, so client writes are allowed.
    capabilities: {
      actionCacheUpdateEnabled: true,
      ...(opts.compressors ? { compressors: opts.compressors } : {}),
      ...(opts.chunking !== undefined ? { chunking: opts.chunking } : {}),
    },
  });
  const port = await bindGrpcServer(server, '127.0.0.1:0');
  return {
    address: `127.0.0.1:${port}`,
    contentAddressableStorage,
    close: async () => {
      services.close();
      await shutdownGrpcServer(server, 500);
    },
  };
}

/** Records the short method name (e.g. "BatchUpdateBlobs") of every call started. */
export function recordingInterceptor(calls: string[]): grpc.Interceptor {
  return (options, nextCall) => {
    calls.push(options.method_definition.path.split('/').pop()!);
    return new grpc.InterceptingCall(nextCall(options));
  };
}

export interface CuttingProxy {
  address: string;
  /** Cuts the connection carrying the data once this many more bytes went from client to server. */
  cutAfterClientBytes(bytes: number): void;
  cuts: number;
  /** Bytes forwarded client->server and server->client so far, over all connections. */
  readonly clientBytes: number;
  readonly serverBytes: number;
  close(): Promise<void>;
}

/** A TCP proxy to `upstream` that can cut one connection after a byte count, once per arming. */
export async function startCuttingProxy(upstream: string): Promise<CuttingProxy> {
  const [host, portText] = upstream.split(':');
  const sockets = new Set<net.Socket>();
  // Bytes forwarded client->server over all connections, and the count at which to cut.
  let forwarded = 0;
  let returned = 0;
  let cutAt: number | undefined;
  const state = { cuts: 0 };
  const server = net.createServer((client) => {
    const target = net.connect(Number(portText), host!);
    sockets.add(client).add(target);
    client.on('data', (data: Buffer) => {
      forwarded += data.length;
      if (cutAt !== undefined && forwarded > cutAt) {
        cutAt = undefined;
        state.cuts++;
        client.destroy();
        target.destroy();
        return;
      }
      target.write(data);
    });
    target.on('data', (data: Buffer) => {
      returned += data.length;
      client.write(data);
    });
    const end = () => {
      client.destroy();
      target.destroy();
      sockets.delete(client);
      sockets.delete(target);
    };
    client.on('close', end).on('error', end);
    target.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    cutAfterClientBytes: (bytes) => {
      cutAt = forwarded + bytes;
    },
    get cuts() {
      return state.cuts;
    },
    get clientBytes() {
      return forwarded;
    },
    get serverBytes() {
      return returned;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

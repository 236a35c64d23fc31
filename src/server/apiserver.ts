/**
 * The apiserver: Bazel's remote cache. Serves Capabilities, ContentAddressableStorage, ByteStream
 * and ActionCache over one gRPC port, backed by a filesystem (or in-memory) CAS and action cache.
 *
 * `registerStorageServices` is the reusable half: the scheduler calls it to serve the same storage
 * APIs on its own port (with execution advertised in Capabilities), so that Bazel can talk to a
 * single endpoint. `startApiServer` builds the stores, registers the services and listens.
 */
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { type ActionCache, BlobStoreActionCache } from '../lib/actioncache/action-cache.js';
import { CompletenessCheckingActionCache } from '../lib/actioncache/completeness-checking-action-cache.js';
import type { BlobStore } from '../lib/blobstore/blob-store.js';
import { FilesystemBlobStore } from '../lib/blobstore/filesystem-blob-store.js';
import { MemoryBlobStore } from '../lib/blobstore/memory-blob-store.js';
import { SmallBlobCachingBlobStore } from '../lib/blobstore/small-blob-caching-blob-store.js';
import { VerifyingBlobStore } from '../lib/blobstore/verifying-blob-store.js';
import { type Clock, systemClock } from '../lib/util/clock.js';
import { type Logger, createLogger } from '../lib/util/logger.js';
import { createHandlerFactory } from './grpc/handlers.js';
import { bindGrpcServer, createGrpcServer, shutdownGrpcServer } from './grpc/server.js';
import {
  actionCacheService,
  byteStreamService,
  capabilitiesService,
  contentAddressableStorageService,
} from '../lib/proto/services.js';
import { createActionCacheService } from './services/action-cache-service.js';
import { createByteStreamService } from './services/byte-stream-service.js';
import { type CapabilitiesConfig, type ResolvedCapabilitiesConfig, createCapabilitiesService, resolveCapabilitiesConfig } from './services/capabilities-service.js';
import { createContentAddressableStorageService } from './services/content-addressable-storage-service.js';

export const DEFAULT_APISERVER_LISTEN_ADDRESS = '0.0.0.0:12100';
/** Memory for small blobs in front of the disk stores when none is configured (see ApiServerConfig). */
export const DEFAULT_MEMORY_CACHE_SIZE_BYTES = 64 * 1024 * 1024;
/** CAS capacity when none is configured: on disk, and in memory (`inMemory`). */
export const DEFAULT_DISK_MAX_SIZE_BYTES = 10 * 1024 ** 3;
export const DEFAULT_MEMORY_MAX_SIZE_BYTES = 1024 ** 3;

export interface StorageServicesDeps {
  /**
   * The CAS. Wrapped in a VerifyingBlobStore unless it already is one, so that no upload through
   * these services can store content under a digest it does not match.
   */
  contentAddressableStorage: BlobStore;
  actionCache: ActionCache;
  logger: Logger;
  /** What Capabilities advertises and the services enforce; the scheduler sets `execution`. */
  capabilities?: CapabilitiesConfig;
  /** Shorthand for `capabilities.maxBatchTotalSizeBytes`. */
  maxBatchTotalSizeBytes?: number;
  /** @default systemClock */
  clock?: Clock;
  /** How long an interrupted ByteStream upload may be resumed. @default 60 000 */
  uploadIdleTimeoutMs?: number;
}

/** Handle on the registered services. */
export interface StorageServices {
  /** The effective capabilities (defaults applied). */
  capabilities: ResolvedCapabilitiesConfig;
  /** Number of ByteStream uploads running or parked for resumption. */
  readonly pendingUploadCount: number;
  /** Aborts parked ByteStream uploads; call when the server shuts down. */
  close(): void;
}

/** Registers Capabilities, ContentAddressableStorage, ByteStream and ActionCache on `server`. */
export function registerStorageServices(server: grpc.Server, deps: StorageServicesDeps): StorageServices {
  const capabilities = resolveCapabilitiesConfig({
    ...deps.capabilities,
    maxBatchTotalSizeBytes: deps.maxBatchTotalSizeBytes ?? deps.capabilities?.maxBatchTotalSizeBytes,
  });
  const contentAddressableStorage =
    deps.contentAddressableStorage instanceof VerifyingBlobStore ? deps.contentAddressableStorage : new VerifyingBlobStore(deps.contentAddressableStorage);
  const handlers = createHandlerFactory(deps.logger);
  const logger = deps.logger;

  server.addService(capabilitiesService, createCapabilitiesService(handlers, capabilities));
  server.addService(
    contentAddressableStorageService,
    createContentAddressableStorageService(handlers, { contentAddressableStorage, capabilities, logger: logger.child('cas') }),
  );
  const byteStream = createByteStreamService(handlers, {
    contentAddressableStorage,
    capabilities,
    logger: logger.child('bytestream'),
    clock: deps.clock,
    uploadIdleTimeoutMs: deps.uploadIdleTimeoutMs,
  });
  server.addService(byteStreamService, byteStream.implementation);
  server.addService(
    actionCacheService,
    createActionCacheService(handlers, { actionCache: deps.actionCache, contentAddressableStorage, capabilities, logger: logger.child('ac') }),
  );

  return {
    capabilities,
    get pendingUploadCount() {
      return byteStream.pendingUploadCount;
    },
    close: () => byteStream.close(),
  };
}

export interface ApiServerConfig {
  /** `host:port` to listen on; port 0 picks a free one. @default DEFAULT_APISERVER_LISTEN_ADDRESS */
  listenAddress?: string;
  /** Directory holding `cas/` and `ac/`. Required unless `inMemory`. */
  storageDir?: string;
  /** CAS capacity in bytes. @default DEFAULT_DISK_MAX_SIZE_BYTES (DEFAULT_MEMORY_MAX_SIZE_BYTES in memory) */
  maxSizeBytes?: number;
  /** Action cache capacity in bytes. @default max(64 MiB, maxSizeBytes / 16) */
  actionCacheMaxSizeBytes?: number;
  /** Keep everything in process memory (lost on restart); for tests and throwaway servers. */
  inMemory?: boolean;
  /**
   * Memory for recently written and read small blobs (up to 1 MiB each) in front of the disk stores:
   * this much for the CAS and an eighth of it (at least 8 MiB) for the action cache; 0 turns it off.
   * Ignored with `inMemory`. @default DEFAULT_MEMORY_CACHE_SIZE_BYTES
   */
  memoryCacheSizeBytes?: number;
  /** @default a logger writing to stderr */
  logger?: Logger;
  /** @default systemClock */
  clock?: Clock;
  /** What Capabilities advertises (digest functions, batch size, symlink strategy, AC updates). */
  capabilities?: CapabilitiesConfig;
  /** How long an interrupted ByteStream upload may be resumed. @default 60 000 */
  uploadIdleTimeoutMs?: number;
}

export interface ApiServer {
  /** The port actually bound (useful with port 0). */
  port: number;
  /** `host:port` as bound, for clients. */
  address: string;
  /** The CAS the services use (verifying). */
  contentAddressableStorage: BlobStore;
  /** The action cache the services use (completeness-checking). */
  actionCache: ActionCache;
  /** Stops accepting calls, lets running ones finish briefly, aborts parked uploads. */
  close(): Promise<void>;
}

/** Builds the stores, registers the storage services and listens on `config.listenAddress`. */
export async function startApiServer(config: ApiServerConfig = {}): Promise<ApiServer> {
  const logger = config.logger ?? createLogger({ component: 'apiserver' });
  const listenAddress = config.listenAddress ?? DEFAULT_APISERVER_LISTEN_ADDRESS;
  const inMemory = config.inMemory ?? false;
  if (!inMemory && !config.storageDir) {
    throw new TypeError('Failed to start apiserver: storageDir is required unless inMemory is set');
  }
  const maxSizeBytes = config.maxSizeBytes ?? (inMemory ? DEFAULT_MEMORY_MAX_SIZE_BYTES : DEFAULT_DISK_MAX_SIZE_BYTES);
  const actionCacheMaxSizeBytes = config.actionCacheMaxSizeBytes ?? Math.max(64 * 1024 * 1024, Math.floor(maxSizeBytes / 16));

  // No existence-caching layer: the filesystem store answers findMissing from an in-memory index, so
  // a cache in front of it would only add staleness.
  let casBackend: BlobStore;
  let acBackend: BlobStore;
  const closeStores: (() => Promise<void>)[] = [];
  if (inMemory) {
    casBackend = new MemoryBlobStore({ maxSizeBytes });
    acBackend = new MemoryBlobStore({ maxSizeBytes: actionCacheMaxSizeBytes });
  } else {
    const storageDir = path.resolve(config.storageDir!);
    const casStore = await FilesystemBlobStore.open({ path: path.join(storageDir, 'cas'), maxSizeBytes, logger: logger.child('cas-store') });
    const acStore = await FilesystemBlobStore.open({ path: path.join(storageDir, 'ac'), maxSizeBytes: actionCacheMaxSizeBytes, logger: logger.child('ac-store') });
    closeStores.push(() => casStore.close(), () => acStore.close());
    casBackend = casStore;
    acBackend = acStore;
    const memoryCacheSizeBytes = config.memoryCacheSizeBytes ?? DEFAULT_MEMORY_CACHE_SIZE_BYTES;
    if (memoryCacheSizeBytes > 0) {
      casBackend = new SmallBlobCachingBlobStore(casBackend, { maxSizeBytes: memoryCacheSizeBytes });
      acBackend = new SmallBlobCachingBlobStore(acBackend, { maxSizeBytes: Math.max(8 * 1024 * 1024, Math.floor(memoryCacheSizeBytes / 8)) });
    }
  }
  const contentAddressableStorage = new VerifyingBlobStore(casBackend);
  const actionCache = new CompletenessCheckingActionCache(new BlobStoreActionCache(acBackend), contentAddressableStorage);

  const server = createGrpcServer();
  const services = registerStorageServices(server, {
    contentAddressableStorage,
    actionCache,
    logger,
    capabilities: config.capabilities,
    clock: config.clock ?? systemClock,
    uploadIdleTimeoutMs: config.uploadIdleTimeoutMs,
  });
  let port: number;
  try {
    port = await bindGrpcServer(server, listenAddress);
  } catch (err) {
    services.close();
    server.forceShutdown();
    await Promise.all(closeStores.map((c) => c()));
    throw err;
  }
  const host = listenAddress.slice(0, listenAddress.lastIndexOf(':'));
  const address = `${host}:${port}`;
  logger.info('apiserver listening', { address, storage: inMemory ? 'memory' : path.resolve(config.storageDir!) });

  let closing: Promise<void> | undefined;
  return {
    port,
    address,
    contentAddressableStorage,
    actionCache,
    close: () => {
      closing ??= (async () => {
        await shutdownGrpcServer(server);
        services.close();
        await Promise.all(closeStores.map((c) => c()));
      })();
      return closing;
    },
  };
}

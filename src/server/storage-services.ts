/**
 * The storage half of the Remote Execution API on a gRPC server: Capabilities, ContentAddressableStorage,
 * ByteStream and ActionCache, plus the Remote Asset API (Fetch, Push) when there is an asset index. The apiserver serves it alone; the scheduler serves it on its own port
 * (with execution advertised in Capabilities), so that Bazel can talk to a single endpoint. Its own
 * module so that neither server imports the other.
 */
import type * as grpc from '@grpc/grpc-js';
import type { ActionCache } from '../lib/actioncache/action-cache.js';
import type { BlobStore } from '../lib/blobstore/blob-store.js';
import { VerifyingBlobStore } from '../lib/blobstore/verifying-blob-store.js';
import type { AssetIndex } from '../lib/asset/asset-index.js';
import { type AssetDownloader, RemoteAsset } from '../lib/asset/remote-asset.js';
import { actionCacheService, byteStreamService, capabilitiesService, contentAddressableStorageService, fetchService, pushService } from '../lib/proto/services.js';
import type { Clock } from '../lib/util/clock.js';
import type { Logger } from '../lib/util/logger.js';
import { type CallGuard, createHandlerFactory } from './grpc/handlers.js';
import type { RpcObserver } from './grpc/rpc-metrics.js';
import type { PortLimits } from './grpc/server.js';
import { createActionCacheService } from './services/action-cache-service.js';
import { createByteStreamService } from './services/byte-stream-service.js';
import type { LogStreamReader } from './services/log-stream-reader.js';
import { type CapabilitiesConfig, type ResolvedCapabilitiesConfig, resolveCapabilitiesConfig } from './services/capabilities-config.js';
import { createCapabilitiesService } from './services/capabilities-service.js';
import { createContentAddressableStorageService } from './services/content-addressable-storage-service.js';
import { createFetchService, createPushService } from './services/remote-asset-service.js';

export interface StorageServicesDeps {
  /** The CAS. Wrapped in a VerifyingBlobStore unless `uploadsVerified` or it already is one. */
  contentAddressableStorage: BlobStore;
  /**
   * The CAS already guarantees that no upload is stored under a digest it does not match: it was
   * built by createStorage, which verifies here or forwards to a server that does. Saves hashing
   * every upload twice. @default false
   */
  uploadsVerified?: boolean;
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
  /** The port's limits; the ByteStream ones are applied here. */
  limits?: PortLimits;
  /** Per-RPC metrics of the server these services are on. */
  rpcObserver?: RpcObserver;
  /** The Remote Asset index; when given, Fetch and Push are served over it and `contentAddressableStorage`. */
  assetIndex?: AssetIndex;
  /** How Fetch gets content the index does not hold (http(s) downloads). @default none */
  assetDownloaders?: readonly AssetDownloader[];
  /** Who may call what (auth-guard.ts); without it every call runs. */
  guard?: CallGuard;
  /** ByteStream reads of live log streams (the scheduler's port). */
  logStreams?: LogStreamReader;
}

/** Handle on the registered services. */
export interface StorageServices {
  /** The effective capabilities (defaults applied). */
  capabilities: ResolvedCapabilitiesConfig;
  /** What was registered (for health and reflection). */
  definitions: grpc.ServiceDefinition[];
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
  const verified = deps.uploadsVerified || deps.contentAddressableStorage instanceof VerifyingBlobStore;
  const contentAddressableStorage = verified ? deps.contentAddressableStorage : new VerifyingBlobStore(deps.contentAddressableStorage);
  const handlers = createHandlerFactory(deps.logger, deps.rpcObserver, deps.guard);
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
    logStreams: deps.logStreams,
    maxPendingUploads: deps.limits?.maxPendingUploads,
    maxParkedMemoryBytes: deps.limits?.maxParkedUploadMemoryBytes,
  });
  server.addService(byteStreamService, byteStream.implementation);
  server.addService(
    actionCacheService,
    createActionCacheService(handlers, { actionCache: deps.actionCache, contentAddressableStorage, capabilities, logger: logger.child('ac') }),
  );

  const definitions: grpc.ServiceDefinition[] = [capabilitiesService, contentAddressableStorageService, byteStreamService, actionCacheService];
  if (deps.assetIndex) {
    // Remote Asset has no Capabilities field: a client learns of it by calling (UNIMPLEMENTED without).
    const remoteAsset = new RemoteAsset({
      index: deps.assetIndex,
      contentAddressableStorage,
      digestFunctions: capabilities.digestFunctions,
      downloaders: deps.assetDownloaders,
      clock: deps.clock,
    });
    server.addService(fetchService, createFetchService(handlers, remoteAsset));
    server.addService(pushService, createPushService(handlers, remoteAsset));
    definitions.push(fetchService, pushService);
  }

  return {
    capabilities,
    definitions,
    get pendingUploadCount() {
      return byteStream.pendingUploadCount;
    },
    close: () => byteStream.close(),
  };
}

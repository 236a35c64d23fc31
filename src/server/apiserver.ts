/**
 * The apiserver: Bazel's remote cache. Serves Capabilities, ContentAddressableStorage, ByteStream
 * and ActionCache over one gRPC port, with the CAS and action cache that createStorage builds from
 * the `storage` tree of the configuration (by default a disk store behind a small-blob memory cache).
 */
import type { AssetIndex } from '../lib/asset/asset-index.js';
import type { AssetDownloader } from '../lib/asset/remote-asset.js';
import type { ActionCache } from '../lib/actioncache/action-cache.js';
import type { BlobStore } from '../lib/blobstore/blob-store.js';
import type { SharedDirectory } from '../lib/blobstore/shared-blob-directory.js';
import type { StorageSection } from '../lib/config/config.js';
import { createStorage } from '../lib/config/create-storage.js';
import { DEFAULT_APISERVER_LISTEN_ADDRESS, type LocalStorageOptions, localStorageConfig } from '../lib/config/defaults.js';
import { type Clock, systemClock } from '../lib/util/clock.js';
import { type Logger, createLogger } from '../lib/util/logger.js';
import type { Registry } from '../lib/util/metrics.js';
import type { Authenticator } from '../lib/auth/authenticator.js';
import { createAuthGuard } from './grpc/auth-guard.js';
import { addIntrospection } from './grpc/introspection.js';
import { createRpcMetrics } from './grpc/rpc-metrics.js';
import { bindGrpcServer, createGrpcServer, type PortLimits, shutdownGrpcServer } from './grpc/server.js';
import type { ServerTls } from './grpc/tls.js';
import type { CapabilitiesConfig } from './services/capabilities-config.js';
import { registerStorageServices } from './storage-services.js';

/** Moved to ./storage-services.js; re-exported for code written against the old home. */

export interface ApiServerConfig extends LocalStorageOptions {
  /** `host:port` to listen on; port 0 picks a free one. @default DEFAULT_APISERVER_LISTEN_ADDRESS */
  listenAddress?: string;
  /** TLS (and mTLS) for the port; plaintext without. */
  tls?: ServerTls;
  /** Checks the bearer token of every call but GetCapabilities (auth-guard.ts); without it nobody needs one. */
  authenticator?: Authenticator;
  /**
   * The `storage` tree (`cas` and `action_cache` required). When absent, the standard local layout
   * described by the LocalStorageOptions fields is used (`storageDir` is then required unless
   * `inMemory`): the same function the `serve` flags go through.
   */
  storage?: StorageSection;
  /** @default a logger writing to stderr */
  logger?: Logger;
  /** @default systemClock */
  clock?: Clock;
  /** What Capabilities advertises (digest functions, batch size, symlink strategy, AC updates). */
  capabilities?: CapabilitiesConfig;
  /** How long an interrupted ByteStream upload may be resumed. @default 60 000 */
  uploadIdleTimeoutMs?: number;
  /** Streams per connection, message size and parked uploads (grpc/server.ts). @default the defaults there */
  limits?: PortLimits;
  /** Where to count RPCs and storage traffic (label server="apiserver"). @default no metrics */
  metrics?: Registry;
  /** How Remote Asset Fetch downloads what its index lacks. @default none (index only) */
  assetDownloaders?: readonly AssetDownloader[];
  /** This process's share of disk stores that other processes use too (apiserver-cluster.ts). @default not shared */
  sharedDirectory?: SharedDirectory;
}

export interface ApiServer {
  /** The port actually bound (useful with port 0). */
  port: number;
  /** `host:port` as bound, for clients. */
  address: string;
  /** The CAS the services use (uploads verified). */
  contentAddressableStorage: BlobStore;
  /** The action cache the services use. */
  actionCache: ActionCache;
  /** The Remote Asset index behind Fetch and Push; absent when `storage.asset` is. */
  assetIndex?: AssetIndex;
  /** Fully-qualified names of the services on the port (health and reflection list these). */
  services: readonly string[];
  /** Health status of every service on the port: NOT_SERVING while draining before shutdown. */
  setServing(serving: boolean): void;
  /**
   * Stops accepting calls, lets running ones (uploads) finish for up to `graceMs`, then cancels
   * them, aborts parked uploads and releases the stores. @default graceMs 2000
   */
  close(graceMs?: number): Promise<void>;
}

/** Builds the stores with createStorage, registers the storage services and listens. */
export async function startApiServer(config: ApiServerConfig = {}): Promise<ApiServer> {
  const logger = config.logger ?? createLogger({ component: 'apiserver' });
  const listenAddress = config.listenAddress ?? DEFAULT_APISERVER_LISTEN_ADDRESS;
  if (!config.storage && !config.inMemory && !config.storageDir) {
    throw new TypeError('Failed to start apiserver: storageDir is required unless inMemory is set');
  }
  const tree: StorageSection = config.storage ?? localStorageConfig(config);
  if (!tree.cas || !tree.action_cache) throw new TypeError('Failed to start apiserver: storage needs both cas and action_cache');
  const clock = config.clock ?? systemClock;
  const storage = await createStorage(
    { cas: tree.cas, cas_instance_scoping: tree.cas_instance_scoping, action_cache: tree.action_cache, asset: tree.asset },
    { clock, logger: logger.child('storage'), metrics: config.metrics, sharedDirectory: config.sharedDirectory },
  );
  const { contentAddressableStorage } = storage;
  const actionCache = storage.actionCache!;

  const server = createGrpcServer({}, config.limits);
  const services = registerStorageServices(server, {
    contentAddressableStorage,
    uploadsVerified: true,
    actionCache,
    logger,
    capabilities: config.capabilities,
    clock,
    uploadIdleTimeoutMs: config.uploadIdleTimeoutMs,
    limits: config.limits,
    assetIndex: storage.assetIndex,
    assetDownloaders: config.assetDownloaders,
    rpcObserver: config.metrics && createRpcMetrics(config.metrics, 'apiserver'),
    guard: config.authenticator && createAuthGuard(config.authenticator, logger),
  });
  const introspection = addIntrospection(server, services.definitions);
  let port: number;
  try {
    port = await bindGrpcServer(server, listenAddress, config.tls?.credentials);
  } catch (err) {
    services.close();
    server.forceShutdown();
    await storage.close();
    throw err;
  }
  const host = listenAddress.slice(0, listenAddress.lastIndexOf(':'));
  const address = `${host}:${port}`;
  logger.info('apiserver listening', { address });

  let closing: Promise<void> | undefined;
  return {
    port,
    address,
    contentAddressableStorage,
    actionCache,
    assetIndex: storage.assetIndex,
    services: introspection.services,
    setServing: introspection.setServing,
    close: (graceMs?: number) => {
      closing ??= (async () => {
        introspection.setServing(false);
        await shutdownGrpcServer(server, graceMs);
        services.close();
        await storage.close();
      })();
      return closing;
    },
  };
}

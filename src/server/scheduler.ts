/**
 * The scheduler process: Execution and google.longrunning Operations over one BuildQueue (in this
 * process, or shared with a fleet through Redis: see create-build-queue.ts),
 * with the WorkerQueue on a separate, private worker port (see worker-port.ts), plus (by default) Capabilities with execution advertised, CAS, ByteStream and
 * ActionCache on the same port, because Bazel sends all of its CAS traffic to the endpoint given as
 * --remote_executor. The stores are either built here by createStorage from a `storage` tree
 * (standalone: by default forwarding to a separate apiserver) or handed in already built (`serve all`
 * shares the apiserver's).
 */
import type { AssetIndex } from '../lib/asset/asset-index.js';
import type { AssetDownloader } from '../lib/asset/remote-asset.js';
import type { ActionCacheConfig } from '../lib/actioncache/config.js';
import type { BlobStoreConfig } from '../lib/blobstore/config.js';
import type { ActionCache } from '../lib/actioncache/action-cache.js';
import type { BlobStore } from '../lib/blobstore/blob-store.js';
import { createStorage, type Storage } from '../lib/config/create-storage.js';
import type { CasInstanceScoping } from '../lib/config/config.js';
import { DEFAULT_SCHEDULER_LISTEN_ADDRESS } from '../lib/config/defaults.js';
import { capabilitiesService, executionService, operationsService } from '../lib/proto/services.js';
import type { BuildQueue } from '../lib/scheduler/build-queue.js';
import { createBuildQueue, type OpenedBuildQueue } from '../lib/scheduler/create-build-queue.js';
import type { InMemoryBuildQueueOptions } from '../lib/scheduler/in-memory-build-queue.js';
import { systemClock } from '../lib/util/clock.js';
import { createLogger } from '../lib/util/logger.js';
import type { Registry } from '../lib/util/metrics.js';
import type { Authenticator } from '../lib/auth/authenticator.js';
import { createAuthGuard, createWorkerGuard } from './grpc/auth-guard.js';
import { createHandlerFactory } from './grpc/handlers.js';
import { addIntrospection } from './grpc/introspection.js';
import { createRpcMetrics } from './grpc/rpc-metrics.js';
import { createActionObserver, type WorkerSummary } from './observability/action-observer.js';
import { bindGrpcServer, createGrpcServer, type PortLimits, shutdownGrpcServer } from './grpc/server.js';
import type { ServerTls } from './grpc/tls.js';
import { createExecutionService } from './services/execution-service.js';
import { createOperationsService } from './services/operations-service.js';
import { type CapabilitiesConfig, resolveCapabilitiesConfig } from './services/capabilities-config.js';
import { createCapabilitiesService } from './services/capabilities-service.js';
import { registerStorageServices, type StorageServices } from './storage-services.js';
import { createLogStreamReader, type LogStreamReader } from './services/log-stream-reader.js';
import { LogStreams } from '../lib/scheduler/log-streams.js';
import { openWorkerPort, type WorkerPort } from './worker-port.js';

export { DEFAULT_SCHEDULER_LISTEN_ADDRESS } from '../lib/config/defaults.js';

/** Every int32 priority is honoured (lower runs first), so the whole range is advertised. */
const ALL_PRIORITIES = [{ minPriority: -2_147_483_648, maxPriority: 2_147_483_647 }];

/** The stores, built already (shared with an in-process apiserver) or described by a `storage` tree. */
export type SchedulerStorage =
  | {
      contentAddressableStorage: BlobStore;
      actionCache: ActionCache;
      /** See StorageServicesDeps.uploadsVerified. @default false */
      uploadsVerified?: boolean;
      /** The Remote Asset index (shared with an in-process apiserver). @default none: no Remote Asset */
      assetIndex?: AssetIndex;
      storage?: never;
    }
  | {
      storage: { cas: BlobStoreConfig; cas_instance_scoping?: CasInstanceScoping; action_cache: ActionCacheConfig; asset?: BlobStoreConfig };
      contentAddressableStorage?: never;
      actionCache?: never;
      uploadsVerified?: never;
      assetIndex?: never;
    };

export type SchedulerConfig = SchedulerOptions & SchedulerStorage;

export interface SchedulerOptions extends Omit<InMemoryBuildQueueOptions, 'contentAddressableStorage' | 'actionCache' | 'state'> {
  /**
   * Where the queue's state lives: `memory`, `sqlite:PATH` (survives a crash; see
   * lib/scheduler/state-store.ts) or `redis://HOST:PORT[/DB]` (shared by a fleet of schedulers).
   * Loaded before the port opens.
   * @default "memory"
   */
  state?: string;
  /** `host:port` to listen on; port 0 picks a free one. @default DEFAULT_SCHEDULER_LISTEN_ADDRESS */
  listenAddress?: string;
  /** The client port's streams per connection, message size and parked uploads (grpc/server.ts). */
  limits?: PortLimits;
  /**
   * `host:port` of the worker port (WorkerQueue), never the client port.
   * @default a private Unix socket (no TCP port; see worker-port.ts)
   */
  workerListenAddress?: string;
  /** TLS (and mTLS) for the client port; plaintext without. */
  tls?: ServerTls;
  /** TLS (and mTLS) for the worker port. @default plaintext (the private Unix socket needs none) */
  workerTls?: ServerTls;
  /** Checks the bearer token of every client call but GetCapabilities (auth-guard.ts); without it nobody needs one. */
  authenticator?: Authenticator;
  /** Checks the token of every worker call on the worker port; without it workers need none. */
  workerAuthenticator?: Authenticator;
  /**
   * Also serve CAS, ByteStream and ActionCache from `contentAddressableStorage` and `actionCache`
   * on this port. Capabilities is served either way.
   * @default true
   */
  serveStorage?: boolean;
  /** What Capabilities advertises; `execution` is always set, with every priority unless given. */
  capabilities?: CapabilitiesConfig;
  /** Where to count RPCs (label server="scheduler"), queue and worker metrics. @default no metrics */
  metrics?: Registry;
  /** How Remote Asset Fetch downloads what its index lacks. @default none (index only) */
  assetDownloaders?: readonly AssetDownloader[];
}

export interface Scheduler {
  /** The port actually bound (useful with port 0). */
  port: number;
  /** `host:port` as bound, for clients. */
  address: string;
  /** What workers dial: `host:port` of the worker port as bound, or `unix:/path`. */
  workerAddress: string;
  buildQueue: BuildQueue;
  /** The action cache behind the queue. */
  actionCache: ActionCache;
  /** Live workers and what each runs (as seen by the WorkerQueue service). */
  workers(): WorkerSummary[];
  /** Reads a live log stream name as ByteStream Read does on this port (for the web UI). */
  readLogStream: LogStreamReader;
  /** The CAS behind the queue and this port's storage services (see StorageServicesDeps.uploadsVerified). */
  contentAddressableStorage: BlobStore;
  /** Fully-qualified names of the services on the port (health and reflection list these). */
  services: readonly string[];
  /** Health status of every service on the port: NOT_SERVING while draining before shutdown. */
  setServing(serving: boolean): void;
  /**
   * Reports NOT_SERVING, refuses new executions (UNAVAILABLE) and waits up to `graceMs` until no
   * operation is queued or executing, while still serving the rest (workers keep reporting results,
   * followers keep getting them).
   */
  drain(graceMs: number): Promise<void>;
  /**
   * Ends held calls (workers get empty answers, followers UNAVAILABLE) and stops the server, giving
   * running calls up to `graceMs`. @default graceMs 2000
   */
  close(graceMs?: number): Promise<void>;
}

/** Builds the queue, registers the services and listens on `config.listenAddress`. */
export async function startScheduler(config: SchedulerConfig): Promise<Scheduler> {
  const logger = config.logger ?? createLogger({ component: 'scheduler' });
  const listenAddress = config.listenAddress ?? DEFAULT_SCHEDULER_LISTEN_ADDRESS;
  const capabilities = resolveCapabilitiesConfig({
    ...config.capabilities,
    execution: { priorityRanges: ALL_PRIORITIES, ...config.capabilities?.execution },
  });
  // Stores built here are released on close; stores handed in belong to the caller.
  let owned: Storage | undefined;
  let stores: { contentAddressableStorage: BlobStore; actionCache: ActionCache; uploadsVerified: boolean };
  let assetIndex: AssetIndex | undefined;
  if (config.storage) {
    owned = await createStorage(config.storage, { clock: config.clock, logger: logger.child('storage') });
    stores = { contentAddressableStorage: owned.contentAddressableStorage, actionCache: owned.actionCache!, uploadsVerified: true };
    assetIndex = owned.assetIndex;
  } else {
    stores = { contentAddressableStorage: config.contentAddressableStorage, actionCache: config.actionCache, uploadsVerified: config.uploadsVerified ?? false };
    assetIndex = config.assetIndex;
  }
  const {
    storage: _tree,
    uploadsVerified: _verified,
    assetIndex: _assetIndex,
    assetDownloaders,
    workerListenAddress,
    tls: _tls,
    workerTls,
    authenticator,
    workerAuthenticator,
    state: stateSetting,
    metrics,
    ...queueOptions
  } = config;
  let opened: OpenedBuildQueue;
  try {
    // Restores operations, queue and leases (or reaches Redis): the port opens only after this.
    opened = await createBuildQueue(stateSetting ?? 'memory', { ...queueOptions, ...stores, logger: logger.child('queue') });
  } catch (err) {
    await owned?.close();
    throw err;
  }
  const buildQueue = opened.buildQueue;

  const server = createGrpcServer({}, config.limits);
  const rpcObserver = metrics && createRpcMetrics(metrics, 'scheduler');
  const guard = authenticator && createAuthGuard(authenticator, logger);
  const handlers = createHandlerFactory(logger, rpcObserver, guard);
  const workerHandlers = createHandlerFactory(logger, rpcObserver, workerAuthenticator && createWorkerGuard(workerAuthenticator, logger));
  const clock = config.clock ?? systemClock;
  const observer = createActionObserver({ buildQueue, logger: logger.child('actions'), clock, workerLeaseMs: config.workerLeaseMs ?? 5_000, metrics });
  // Live logs: workers append over the worker port, clients read over ByteStream on this port.
  const logStreams = new LogStreams({ clock });
  const readLogStream = createLogStreamReader({ logStreams, buildQueue, contentAddressableStorage: stores.contentAddressableStorage, clock });
  let storage: StorageServices | undefined;
  if (config.serveStorage ?? true) {
    storage = registerStorageServices(server, {
      contentAddressableStorage: stores.contentAddressableStorage,
      uploadsVerified: stores.uploadsVerified,
      actionCache: stores.actionCache,
      logger,
      capabilities,
      clock: config.clock,
      limits: config.limits,
      rpcObserver,
      assetIndex,
      assetDownloaders,
      guard,
      logStreams: readLogStream,
    });
  } else {
    server.addService(capabilitiesService, createCapabilitiesService(handlers, capabilities));
  }
  let draining = false;
  const executions = { buildQueue, digestFunctions: capabilities.digestFunctions, observer, draining: () => draining };
  server.addService(executionService, createExecutionService(handlers, executions));
  server.addService(operationsService, createOperationsService(handlers, { buildQueue }));
  // WorkerQueue is served on the private worker port only (see worker-port.ts), never here.
  const introspection = addIntrospection(server, [...(storage ? storage.definitions : [capabilitiesService]), executionService, operationsService]);

  let port: number;
  let workerPort: WorkerPort;
  try {
    port = await bindGrpcServer(server, listenAddress, config.tls?.credentials);
    workerPort = await openWorkerPort(workerHandlers, { buildQueue, observer, logStreams }, workerListenAddress, workerTls?.credentials);
  } catch (err) {
    opened.close();
    observer.close();
    storage?.close();
    server.forceShutdown();
    await owned?.close();
    throw err;
  }
  const host = listenAddress.slice(0, listenAddress.lastIndexOf(':'));
  const address = `${host}:${port}`;
  logger.info('scheduler listening', { address, workerAddress: workerPort.address, storage: storage ? 'served' : 'not served' });

  let closing: Promise<void> | undefined;
  return {
    port,
    address,
    workerAddress: workerPort.address,
    buildQueue,
    contentAddressableStorage: stores.contentAddressableStorage,
    actionCache: stores.actionCache,
    workers: () => observer.workers(),
    readLogStream,
    services: introspection.services,
    setServing: introspection.setServing,
    drain: async (graceMs) => {
      introspection.setServing(false);
      draining = true;
      const deadline = clock.now() + graceMs;
      const busy = async () => (await buildQueue.listOperations({ allInstances: true, filter: 'done=false', pageSize: 1 })).operations.length > 0;
      if (await busy()) logger.info('Draining: waiting for queued and executing operations', { graceMs });
      while ((await busy()) && clock.now() < deadline) await clock.sleep(Math.min(100, Math.max(1, deadline - clock.now())));
    },
    close: (graceMs?: number) => {
      closing ??= (async () => {
        introspection.setServing(false);
        // First release the calls the queue holds, so the server can drain instead of waiting.
        buildQueue.close();
        observer.close();
        await Promise.all([shutdownGrpcServer(server, graceMs), workerPort.close()]);
        opened.close();
        storage?.close();
        await owned?.close();
      })();
      return closing;
    },
  };
}

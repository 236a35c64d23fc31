/**
 * What `bzutil serve …` runs with no configuration: the defaults of every key, as a tree of the same
 * shape as a config file, and the standard storage layouts that the storage flags are shorthands for.
 */
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { redactUrlPassword } from '../util/redact-url.js';
import { formatSizeBytes } from '../util/units.js';
import { bwrapAvailable, DEFAULT_LIMITS } from '../worker/sandbox-command.js';
import { DEFAULT_MAX_QUEUED_ACTIONS_PER_INSTANCE, DEFAULT_MAX_QUEUED_BYTES_PER_INSTANCE } from '../scheduler/build-queue-options.js';
import type { ActionCacheConfig } from '../actioncache/config.js';
import type { BlobStoreConfig } from '../blobstore/config.js';
import type { PortLimitsSection, StorageSection, BzutilConfig, RunnerSetting, ServeRole, WorkerLimitsSection } from './config.js';

/** Loopback by default: nothing is reachable from the network until an address is configured. */
export const DEFAULT_APISERVER_LISTEN_ADDRESS = '127.0.0.1:12100';
export const DEFAULT_SCHEDULER_LISTEN_ADDRESS = '127.0.0.1:9099';
/** Where `serve scheduler` and `serve worker` find the apiserver, and `serve worker` the scheduler. */
export const DEFAULT_REMOTE_APISERVER_ADDRESS = 'localhost:12100';
export const DEFAULT_REMOTE_SCHEDULER_ADDRESS = 'localhost:9099';
/** `serve scheduler`'s private worker port, loopback only unless configured otherwise. */
export const DEFAULT_WORKER_LISTEN_ADDRESS = '127.0.0.1:9098';
/** Where `serve worker` finds the scheduler's worker port. */
export const DEFAULT_REMOTE_WORKER_PORT_ADDRESS = 'localhost:9098';
/** Memory for small blobs in front of the disk stores (the action cache gets an eighth, at least 8 MiB). */
export const DEFAULT_MEMORY_CACHE_SIZE_BYTES = 64 * 1024 * 1024;
/** CAS capacity on disk, and in memory (`--in_memory`). */
export const DEFAULT_DISK_MAX_SIZE_BYTES = 10 * 1024 ** 3;
export const DEFAULT_MEMORY_MAX_SIZE_BYTES = 1024 ** 3;
/** Capacity of the Remote Asset index (records of a few hundred bytes each). */
export const DEFAULT_ASSET_INDEX_MAX_SIZE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_WORKER_LEASE = '5s';
/** Slots the scheduler believes a worker has at most (a worker claiming more is capped). */
export const DEFAULT_MAX_WORKER_SLOTS = 256;
/**
 * The operator's HTTP port (/metrics) of each role, loopback only: one per role so that an
 * apiserver, a scheduler and a worker can share a host with their defaults.
 */
export const DEFAULT_HTTP_LISTEN_ADDRESS: Record<ServeRole, string> = {
  all: '127.0.0.1:8080',
  apiserver: '127.0.0.1:8081',
  scheduler: '127.0.0.1:8082',
  worker: '127.0.0.1:8083',
};
export const DEFAULT_SHUTDOWN_GRACE_PERIOD = '30s';
export const DEFAULT_UPLOAD_IDLE_TIMEOUT = '1m';
export const DEFAULT_FILE_CACHE_MAX_SIZE = '10GiB';
export const DEFAULT_WORKER_GRACE = '5s';
export const DEFAULT_OPERATION_RETENTION = '1h';
/** The SQLite file of `serve all` inside its storage directory, and of `serve scheduler` in its data directory. */
export const SCHEDULER_DB_FILE = 'scheduler.db';

/** `sqlite:<dir>/scheduler.db`: the default `scheduler.state` for a storage or data directory. */
export function sqliteStateIn(dir: string): string {
  return `sqlite:${join(dir, SCHEDULER_DB_FILE)}`;
}

/** The port limits of the apiserver's and the scheduler's client ports, sized for a 4 GiB machine. */
export const DEFAULT_PORT_LIMITS: Required<PortLimitsSection> = {
  max_concurrent_streams: 512,
  max_receive_message_size: formatSizeBytes(4 * 1024 * 1024 + 64 * 1024),
  max_parked_upload_memory: formatSizeBytes(64 * 1024 * 1024),
  max_pending_uploads: 1000,
};

/** The scheduler section's defaults, with the state kept under `stateDir`. */
function schedulerDefaults(stateDir: string) {
  return {
    listen_address: DEFAULT_SCHEDULER_LISTEN_ADDRESS,
    worker_lease: DEFAULT_WORKER_LEASE,
    max_worker_slots: DEFAULT_MAX_WORKER_SLOTS,
    allow_ac_updates: false,
    state: sqliteStateIn(stateDir),
    worker_grace: DEFAULT_WORKER_GRACE,
    operation_retention: DEFAULT_OPERATION_RETENTION,
    ...DEFAULT_PORT_LIMITS,
    max_queued_actions_per_instance: DEFAULT_MAX_QUEUED_ACTIONS_PER_INSTANCE,
    max_queued_bytes_per_instance: formatSizeBytes(DEFAULT_MAX_QUEUED_BYTES_PER_INSTANCE),
  };
}

/** Per-action limits, as config values (lib/worker's DEFAULT_LIMITS). */
export const DEFAULT_WORKER_LIMITS: Required<WorkerLimitsSection> = {
  memory: formatSizeBytes(DEFAULT_LIMITS.memoryBytes),
  processes: DEFAULT_LIMITS.processes,
  file_size: formatSizeBytes(DEFAULT_LIMITS.fileSizeBytes),
  output_size: formatSizeBytes(DEFAULT_LIMITS.outputBytes),
};

/**
 * `worker.runner` when the tree does not say: bwrap when it is installed on this host, else local
 * (the worker then warns loudly). Decided when the tree is resolved, so that `--print_config` shows
 * the runner that would start rather than "auto".
 */
export function defaultRunner(): RunnerSetting {
  return bwrapAvailable() ? 'bwrap' : 'local';
}

/** `$XDG_CACHE_HOME/bzutil`, else `~/.cache/bzutil`. */
export function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'bzutil');
}

export interface LocalStorageOptions {
  /** Holds `cas/`, `ac/` and `asset/`. Ignored with `inMemory`. @default <cache dir>/storage */
  storageDir?: string;
  /** CAS capacity. @default DEFAULT_DISK_MAX_SIZE_BYTES (DEFAULT_MEMORY_MAX_SIZE_BYTES in memory) */
  maxSizeBytes?: number;
  /** Action cache capacity. @default max(64 MiB, maxSizeBytes / 16) */
  actionCacheMaxSizeBytes?: number;
  /** Small-blob memory cache in front of the disk stores; 0 turns it off. @default DEFAULT_MEMORY_CACHE_SIZE_BYTES */
  memoryCacheSizeBytes?: number;
  /** Everything in process memory, lost on exit. */
  inMemory?: boolean;
}

/**
 * The standard local layout that `--storage_dir`, `--max_size`, `--memory_cache` and `--in_memory`
 * describe: a disk CAS and action cache, each behind a small-blob memory cache, or two memory stores.
 * Sizes are bytes; the config loader prints them in canonical form.
 */
export function localStorageConfig(opts: LocalStorageOptions = {}): Required<Pick<StorageSection, 'cas' | 'action_cache' | 'asset'>> {
  const inMemory = opts.inMemory ?? false;
  const maxSizeBytes = opts.maxSizeBytes ?? (inMemory ? DEFAULT_MEMORY_MAX_SIZE_BYTES : DEFAULT_DISK_MAX_SIZE_BYTES);
  const actionCacheMaxSizeBytes = opts.actionCacheMaxSizeBytes ?? Math.max(64 * 1024 * 1024, Math.floor(maxSizeBytes / 16));
  if (inMemory) {
    return {
      cas: { memory: { max_size_bytes: maxSizeBytes } },
      action_cache: { memory: { max_size_bytes: actionCacheMaxSizeBytes } },
      asset: { memory: { max_size_bytes: DEFAULT_ASSET_INDEX_MAX_SIZE_BYTES } },
    };
  }
  const storageDir = opts.storageDir ?? join(defaultCacheDir(), 'storage');
  const cas = { disk: { path: join(storageDir, 'cas'), max_size_bytes: maxSizeBytes } };
  const actionCache = { disk: { path: join(storageDir, 'ac'), max_size_bytes: actionCacheMaxSizeBytes } };
  const asset = { disk: { path: join(storageDir, 'asset'), max_size_bytes: DEFAULT_ASSET_INDEX_MAX_SIZE_BYTES } };
  const memoryCacheSizeBytes = opts.memoryCacheSizeBytes ?? DEFAULT_MEMORY_CACHE_SIZE_BYTES;
  if (memoryCacheSizeBytes === 0) return { cas, action_cache: actionCache, asset };
  return {
    cas: { small_blob_caching: { max_size_bytes: memoryCacheSizeBytes, backend: cas } },
    action_cache: { small_blob_caching: { max_size_bytes: Math.max(8 * 1024 * 1024, Math.floor(memoryCacheSizeBytes / 8)), backend: actionCache } },
    asset,
  };
}

/**
 * The layout `--cas ADDRESS[,ADDRESS…]` describes: the CAS of a remote apiserver, or with several
 * addresses a `sharding` node over them (equal weights, each shard keyed by its address so that every
 * process agrees on placement whatever the order of its list). The action cache, when the role has
 * one, is the first apiserver's; `--ac redis://…` replaces it with one every apiserver shares.
 */
export function remoteStorageConfig(addresses: string, opts: { actionCache: boolean }): StorageSection {
  const list = splitAddresses(addresses);
  const cas: BlobStoreConfig =
    list.length === 1 ? { grpc: { address: list[0]! } } : { sharding: { shards: list.map((address) => ({ weight: 1, backend: { grpc: { address } } })) } };
  return opts.actionCache ? { cas, action_cache: { grpc: { address: list[0]! } } } : { cas };
}

/** The addresses of a comma-separated list; an empty entry or one given twice is an error. */
export function splitAddresses(addresses: string): string[] {
  const list = addresses.split(',').map((a) => a.trim());
  if (list.some((a) => a === '')) throw new TypeError(`${JSON.stringify(addresses)} has an empty entry`);
  const twice = list.find((a, i) => list.indexOf(a) !== i);
  if (twice !== undefined) throw new TypeError(`${JSON.stringify(twice)} is given twice`);
  return list;
}

/** The action cache `--ac` describes: `redis://…`/`rediss://…` a Redis server, `host:port` a remote apiserver's. */
export function actionCacheFlagConfig(value: string): ActionCacheConfig {
  if (/^rediss?:\/\//.test(value)) return { redis: { url: value } };
  if (/^\S+:\d+$/.test(value)) return { grpc: { address: value } };
  throw new TypeError(`expected redis://[:password@]host:port[/db] or an apiserver's host:port, got ${JSON.stringify(redactUrlPassword(value))}`);
}


/** A copy of `tree` with every URL password redacted (Redis URLs may carry one), for --print_config. */
export function redactConfig<T>(tree: T): T {
  const walk = (value: unknown): unknown => {
    if (typeof value === 'string') return redactUrlPassword(value);
    if (Array.isArray(value)) return value.map(walk);
    if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]));
    return value;
  };
  return walk(tree) as T;
}

/** Every key `role` reads, at its default. */
export function defaultConfig(role: ServeRole): BzutilConfig {
  const { log_level, ...sections } = roleDefaults(role);
  return { log_level, shutdown_grace_period: DEFAULT_SHUTDOWN_GRACE_PERIOD, http: { listen_address: DEFAULT_HTTP_LISTEN_ADDRESS[role] }, ...sections };
}

function roleDefaults(role: ServeRole): BzutilConfig {
  const worker = {
    slots: availableParallelism(),
    platform: {},
    file_cache_max_size_bytes: DEFAULT_FILE_CACHE_MAX_SIZE,
    runner: defaultRunner(),
    chroot: false,
    sandbox_reuse: true,
    allow_root_actions: false,
    limits: { ...DEFAULT_WORKER_LIMITS },
  };
  switch (role) {
    case 'all':
      return {
        log_level: 'info',
        apiserver: { listen_address: DEFAULT_APISERVER_LISTEN_ADDRESS, upload_idle_timeout: DEFAULT_UPLOAD_IDLE_TIMEOUT, allow_ac_updates: false, processes: 1, ...DEFAULT_PORT_LIMITS },
        scheduler: schedulerDefaults(join(defaultCacheDir(), 'storage')),
        worker: { ...worker, work_dir: join(defaultCacheDir(), 'work') },
        storage: localStorageConfig(),
      };
    case 'apiserver':
      return {
        log_level: 'info',
        apiserver: { listen_address: DEFAULT_APISERVER_LISTEN_ADDRESS, upload_idle_timeout: DEFAULT_UPLOAD_IDLE_TIMEOUT, allow_ac_updates: false, processes: 1, ...DEFAULT_PORT_LIMITS },
        storage: localStorageConfig(),
      };
    case 'scheduler':
      return {
        log_level: 'info',
        scheduler: { ...schedulerDefaults(join(defaultCacheDir(), 'scheduler')), worker_listen_address: DEFAULT_WORKER_LISTEN_ADDRESS },
        storage: remoteStorageConfig(DEFAULT_REMOTE_APISERVER_ADDRESS, { actionCache: true }),
      };
    case 'worker':
      return {
        log_level: 'info',
        worker: { ...worker, scheduler_address: DEFAULT_REMOTE_WORKER_PORT_ADDRESS, work_dir: join(defaultCacheDir(), 'worker') },
        storage: remoteStorageConfig(DEFAULT_REMOTE_APISERVER_ADDRESS, { actionCache: false }),
      };
  }
}

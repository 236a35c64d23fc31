/**
 * The deployment configuration: one tree for everything `bzutil serve …` builds, mirroring the object
 * graph (a section per server, storage as nested stores). Its JSON Schema,
 * schema/bzutil-config.schema.json, is the reference and is what validates it; these types follow
 * the schema. Keys are snake_case. Sizes are bytes or text like "10GiB", durations text like "30s".
 *
 * Planned sections: none at the moment. A new one is a class plus a factory case plus a schema entry,
 * refused until then so that no key is silently ignored.
 */
import type { TransferCompressor } from '../compression/compressor.js';
import type { DigestFunction } from '../digest/digest-function.js';
import type { ActionCacheConfig } from '../actioncache/config.js';
import type { AuthSection } from '../auth/create-authenticator.js';
import type { BlobStoreConfig, ClientTlsSection, DurationSetting, SizeSetting } from '../blobstore/config.js';

export type { AuthSection, ClientTlsSection };

export type LogLevelSetting = 'debug' | 'info' | 'warn' | 'error';

/** TLS on a client port; files are PEM and re-read on SIGHUP. */
export interface TlsSection {
  cert_file: string;
  key_file: string;
  /** Clients must present a certificate signed by this CA (mTLS). */
  client_ca_file?: string;
}

/** What one client connection may make a server hold (apiserver and scheduler client ports). */
export interface PortLimitsSection {
  /** Streams one client connection may have open at once (grpc.max_concurrent_streams). */
  max_concurrent_streams?: number;
  /** Largest gRPC message accepted. */
  max_receive_message_size?: SizeSetting;
  /** Bytes parked ByteStream uploads may keep in memory in total; past it they spill to their files. */
  max_parked_upload_memory?: SizeSetting;
  /** ByteStream uploads running or parked at once. */
  max_pending_uploads?: number;
}

export interface ApiServerSection extends PortLimitsSection {
  listen_address?: string;
  tls?: TlsSection;
  upload_idle_timeout?: DurationSetting;
  /** Whether clients may write the action cache (UpdateActionResult); off, only the scheduler does. */
  allow_ac_updates?: boolean;
  /** Digest functions served and advertised; default all (sha256 first). */
  digest_functions?: DigestFunction[];
  /** Transfer compressors served and advertised; default zstd and deflate. */
  compressors?: TransferCompressor[];
  /** Processes serving the port (`serve apiserver` only; node:cluster); default 1. See server/apiserver-cluster.ts. */
  processes?: number;
}

export interface SchedulerSection extends PortLimitsSection {
  listen_address?: string;
  tls?: TlsSection;
  /** The private worker port (WorkerQueue); `serve all` opens none unless given (its worker uses a Unix socket). */
  worker_listen_address?: string;
  /** Token file of the workers (same format as auth.tokens_file; permissions not needed): workers must send one. */
  worker_tokens_file?: string;
  /** TLS of the worker port; default: the client port's `tls`. With client_ca_file, workers need a certificate. */
  worker_tls?: TlsSection;
  worker_lease?: DurationSetting;
  /** The most slots one worker is believed to have, whatever it announces. */
  max_worker_slots?: number;
  /** As apiserver.allow_ac_updates, for the storage APIs on the scheduler port. */
  allow_ac_updates?: boolean;
  /** As apiserver.digest_functions, for the scheduler port (execution included). */
  digest_functions?: DigestFunction[];
  /** As apiserver.compressors, for the scheduler port. */
  compressors?: TransferCompressor[];
  /** `memory`, `sqlite:PATH` or `redis://HOST:PORT[/DB]`; see lib/scheduler/create-build-queue.ts. */
  state?: string;
  /** After a restart, how long a running action waits for its worker before it is requeued. */
  worker_grace?: DurationSetting;
  /** How long finished operations stay queryable. */
  operation_retention?: DurationSetting;
  /** Executions one instance may have waiting for a worker; past it Execute answers RESOURCE_EXHAUSTED. */
  max_queued_actions_per_instance?: number;
  /** Bytes of queued Actions, Commands and handed-over Directories one instance may have waiting. */
  max_queued_bytes_per_instance?: SizeSetting;
}

/** How actions run: bubblewrap sandbox (namespaces, unprivileged uid) or plain child processes. */
export type RunnerSetting = 'local' | 'bwrap';

/** What one action may use (lib/worker ActionLimits). */
export interface WorkerLimitsSection {
  memory?: SizeSetting;
  processes?: number;
  file_size?: SizeSetting;
  output_size?: SizeSetting;
}

export interface WorkerSection {
  /** Stable across restarts, so a restarted scheduler recognises the worker's leases. Default: host + work_dir. */
  id?: string;
  /** `serve worker` only; in `serve all` the worker dials the scheduler of its own process. */
  scheduler_address?: string;
  /** `serve worker` only: a file holding the worker token the scheduler's worker port asks for. */
  token_file?: string;
  /** `serve worker` only: TLS towards the scheduler's worker port. */
  tls?: ClientTlsSection;
  slots?: number;
  work_dir?: string;
  platform?: Record<string, string | string[]>;
  file_cache_max_size_bytes?: SizeSetting;
  /** Default: bwrap when installed, else local (resolved when the tree is, so `--print_config` shows it). */
  runner?: RunnerSetting;
  /** Every action chrooted into its input root (bwrap only). */
  chroot?: boolean;
  /** bwrap: keep one persistent sandbox per runner slot, reset between actions (false: a bwrap per action). */
  sandbox_reuse?: boolean;
  /** "uid:gid" actions run as when the worker is root; no default key: 65534:65534 (bwrap) or the worker's own (local). */
  run_as?: string;
  allow_root_actions?: boolean;
  limits?: WorkerLimitsSection;
}

export interface HttpSection {
  /** `host:port` of the operator's HTTP port (/metrics); empty turns it off. */
  listen_address?: string;
}

/** Whether the CAS is one pool for every instance name or one per instance (instance-sharing-blob-store.ts). */
export type CasInstanceScoping = 'shared' | 'per_instance';

export interface StorageSection {
  cas?: BlobStoreConfig;
  /** `shared` (default): a blob uploaded under any instance is found under every instance; `per_instance`: only under its own. */
  cas_instance_scoping?: CasInstanceScoping;
  action_cache?: ActionCacheConfig;
  /** The Remote Asset index (URI + qualifiers -> digest); without it no Remote Asset is served. */
  asset?: BlobStoreConfig;
}

/** Remote Asset downloads (lib/asset/url-policy.ts). */
export interface AssetSection {
  /** URL patterns (`*` = any characters) that may reach loopback, link-local and private addresses. */
  allow?: string[];
  /** Largest download (FetchBlob body or archive). @default 1GiB */
  max_download_size?: SizeSetting;
  /** Most bytes a FetchDirectory archive may unpack to. @default 4GiB */
  max_unpacked_size?: SizeSetting;
}

export interface BzutilConfig {
  log_level?: LogLevelSetting;
  /** On SIGTERM, how long running uploads and actions may take to finish before they are cut off. */
  shutdown_grace_period?: DurationSetting;
  http?: HttpSection;
  /** Who may call the client ports (apiserver, scheduler) and the HTTP pages; absent: nobody needs a credential. */
  auth?: AuthSection;
  apiserver?: ApiServerSection;
  scheduler?: SchedulerSection;
  worker?: WorkerSection;
  storage?: StorageSection;
  asset?: AssetSection;
}

/** The `serve` commands; each uses some sections of the tree. */
export type ServeRole = 'all' | 'apiserver' | 'scheduler' | 'worker';

/** Which top-level sections (and storage keys) a role reads; any other is refused, not ignored. */
export const ROLE_SECTIONS: Record<ServeRole, { sections: readonly (keyof BzutilConfig)[]; storage: readonly (keyof StorageSection)[] }> = {
  all: { sections: ['log_level', 'shutdown_grace_period', 'http', 'auth', 'apiserver', 'scheduler', 'worker', 'storage', 'asset'], storage: ['cas', 'cas_instance_scoping', 'action_cache', 'asset'] },
  apiserver: { sections: ['log_level', 'shutdown_grace_period', 'http', 'auth', 'apiserver', 'storage', 'asset'], storage: ['cas', 'cas_instance_scoping', 'action_cache', 'asset'] },
  scheduler: { sections: ['log_level', 'shutdown_grace_period', 'http', 'auth', 'scheduler', 'storage', 'asset'], storage: ['cas', 'cas_instance_scoping', 'action_cache', 'asset'] },
  worker: { sections: ['log_level', 'shutdown_grace_period', 'http', 'worker', 'storage'], storage: ['cas'] },
};

/** A tree after defaults, file and flags, validated: every key the role reads is present. */
export interface ResolvedConfig {
  log_level: LogLevelSetting;
  shutdown_grace_period: DurationSetting;
  http: Required<HttpSection>;
  auth?: AuthSection;
  apiserver?: Omit<Required<ApiServerSection>, 'tls'> & { tls?: TlsSection };
  scheduler?: Omit<Required<SchedulerSection>, 'worker_listen_address' | 'tls' | 'worker_tokens_file' | 'worker_tls'> & {
    worker_listen_address?: string;
    tls?: TlsSection;
    worker_tokens_file?: string;
    worker_tls?: TlsSection;
  };
  worker?: Omit<Required<WorkerSection>, 'scheduler_address' | 'id' | 'run_as' | 'limits' | 'token_file' | 'tls'> & {
    scheduler_address?: string;
    id?: string;
    run_as?: string;
    limits: Required<WorkerLimitsSection>;
    token_file?: string;
    tls?: ClientTlsSection;
  };
  storage: { cas: BlobStoreConfig; cas_instance_scoping?: CasInstanceScoping; action_cache?: ActionCacheConfig; asset?: BlobStoreConfig };
  asset?: AssetSection;
}

/** One problem in a configuration, at a dotted key path (`storage.cas.disk.max_size_bytes`). */
export interface ConfigIssue {
  path: string;
  message: string;
}

/** A configuration that cannot be used; the message lists every issue as `path: message`. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly issues: readonly ConfigIssue[],
    source?: string,
  ) {
    super(`${source ? `Invalid configuration in ${source}` : 'Invalid configuration'}:\n${issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`);
  }
}

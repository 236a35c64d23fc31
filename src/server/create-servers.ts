/**
 * One factory per server role, each reading its section of a resolved configuration tree (see
 * lib/config): the only place where configuration keys become server options. The `serve` commands
 * and `startAll` go through here, so a new key is read in exactly one spot.
 *
 * The scheduler and the worker (with the scheduler's state stores and the sandboxes) are imported
 * by their factories when called, so that `serve apiserver` does not load them.
 */
import { HttpDownloader } from '../lib/asset/http-downloader.js';
import type { AssetDownloader } from '../lib/asset/remote-asset.js';
import { UrlPolicy } from '../lib/asset/url-policy.js';
import type { TransferCompressor } from '../lib/compression/compressor.js';
import type { DigestFunction } from '../lib/digest/digest-function.js';
import type { CapabilitiesConfig } from './services/capabilities-config.js';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Authenticator } from '../lib/auth/authenticator.js';
import { createAuthenticator } from '../lib/auth/create-authenticator.js';
import { TokenFileAuthenticator } from '../lib/auth/token-file.js';
import type { BlobStore } from '../lib/blobstore/blob-store.js';
import type { SharedDirectory } from '../lib/blobstore/shared-blob-directory.js';
import { ConfigError, type PortLimitsSection, type ResolvedConfig, type TlsSection } from '../lib/config/config.js';
import { createStorage, unsharedActionCacheWarning } from '../lib/config/create-storage.js';
import type { Clock } from '../lib/util/clock.js';
import type { Logger } from '../lib/util/logger.js';
import type { Registry } from '../lib/util/metrics.js';
import { readSecretFile } from '../lib/util/secret-file.js';
import { parseDurationMs, parseSizeBytes } from '../lib/util/units.js';
import { MAX_BATCH_TOTAL_SIZE_BYTES } from '../lib/proto/message-limits.js';
import { type ApiServer, startApiServer } from './apiserver.js';
import type { Scheduler, SchedulerStorage } from './scheduler.js';
import { warnIfExposed } from './exposure-warning.js';
import type { PortLimits } from './grpc/server.js';
import { createServerTls, reloadOnSighup, type ServerTls } from './grpc/tls.js';
import { type HttpServer, startHttpServer } from './http/http-server.js';
import type { UiSources } from './http/ui/pages.js';
import type { WorkerHandle } from './worker.js';

export interface ServerDeps {
  logger: Logger;
  /** @default systemClock */
  clock?: Clock;
  /** The process's metrics registry, shared by its servers. @default no metrics */
  metrics?: Registry;
  /** This process's share of disk stores used by several processes (apiserver-cluster.ts). @default not shared */
  sharedDirectory?: SharedDirectory;
}

/**
 * The operator's HTTP port of `config` (`http.listen_address`), or undefined when that is empty.
 * With `auth` configured its pages and /metrics need the same credentials as the gRPC ports.
 */
export async function createHttpServer(config: ResolvedConfig, deps: ServerDeps & { metrics: Registry; ui?: UiSources }): Promise<HttpServer | undefined> {
  if (config.http.listen_address === '') return undefined;
  const authenticator = await createAuthenticator(config.auth, deps.logger.child('auth'));
  try {
    const server = await startHttpServer({ listenAddress: config.http.listen_address, metrics: deps.metrics, logger: deps.logger, ui: deps.ui, authenticator });
    return withSighupReload(closingAuthenticator(server, authenticator), [authenticator], deps.logger);
  } catch (err) {
    authenticator?.close?.();
    throw err;
  }
}

/** `server`, closing `authenticator` (its timers) when it closes. */
function closingAuthenticator<T extends { close(): Promise<void> }>(server: T, authenticator: Authenticator | undefined): T {
  if (!authenticator?.close) return server;
  const close = server.close.bind(server);
  server.close = async () => {
    await close();
    authenticator.close?.();
  };
  return server;
}

/** The apiserver of `config` (its `apiserver` and `storage` sections). */
export async function createApiServer(config: ResolvedConfig, deps: ServerDeps): Promise<ApiServer> {
  const section = required(config.apiserver, 'apiserver');
  const tls = serverTls(section.tls);
  const authenticator = await createAuthenticator(config.auth, deps.logger.child('auth'));
  warnIfExposed(deps.logger, 'apiserver', section.listen_address, { tls: tls !== undefined, auth: authenticator !== undefined });
  const server = await startApiServer({
    assetDownloaders: assetDownloaders(config),
    tls,
    authenticator,
    listenAddress: section.listen_address,
    storage: config.storage,
    uploadIdleTimeoutMs: parseDurationMs(section.upload_idle_timeout),
    limits: portLimitsOf(section, 'apiserver'),
    capabilities: capabilitiesOf(section),
    logger: deps.logger,
    clock: deps.clock,
    metrics: deps.metrics,
    sharedDirectory: deps.sharedDirectory,
  });
  return withSighupReload(server, [tls, authenticator], deps.logger);
}

/**
 * The scheduler of `config`; its stores are built from `storage` unless `shared` hands in stores
 * already built (and verified) by an apiserver in the same process.
 */
export async function createScheduler(config: ResolvedConfig, deps: ServerDeps, shared?: { contentAddressableStorage: BlobStore; actionCache: ApiServer['actionCache']; assetIndex?: ApiServer['assetIndex'] }): Promise<Scheduler> {
  const section = required(config.scheduler, 'scheduler');
  const tls = serverTls(section.tls);
  const authenticator = await createAuthenticator(config.auth, deps.logger.child('auth'));
  warnIfExposed(deps.logger, 'scheduler', section.listen_address, { tls: tls !== undefined, auth: authenticator !== undefined });
  // The worker port (when it has an address) gets its own TLS, else the client port's; the private
  // Unix socket of serve all needs none. resolveConfig refused a non-loopback port without worker auth.
  const hasWorkerPort = section.worker_listen_address !== undefined;
  const workerTls = hasWorkerPort ? (section.worker_tls ? serverTls(section.worker_tls) : tls) : undefined;
  const workerAuthenticator =
    hasWorkerPort && section.worker_tokens_file !== undefined
      ? await TokenFileAuthenticator.open({ file: section.worker_tokens_file, logger: deps.logger.child('worker-auth'), requirePermissions: false })
      : undefined;
  const workerCertificates = (section.worker_tls ?? section.tls)?.client_ca_file !== undefined;
  if (hasWorkerPort) {
    warnIfExposed(deps.logger, 'scheduler worker port', section.worker_listen_address!, { tls: workerTls !== undefined, auth: workerAuthenticator !== undefined || workerCertificates });
  }
  const storage: SchedulerStorage = shared
    ? { ...shared, uploadsVerified: true }
    : {
        storage: {
          cas: config.storage.cas,
          cas_instance_scoping: config.storage.cas_instance_scoping,
          action_cache: required(config.storage.action_cache, 'storage.action_cache'),
          asset: config.storage.asset,
        },
      };
  const unshared = shared ? undefined : unsharedActionCacheWarning(config.storage);
  if (unshared) deps.logger.warn(unshared);
  const { startScheduler } = await import('./scheduler.js');
  const scheduler = await startScheduler({
    assetDownloaders: assetDownloaders(config),
    tls,
    authenticator,
    workerTls,
    workerAuthenticator,
    listenAddress: section.listen_address,
    limits: portLimitsOf(section, 'scheduler'),
    workerListenAddress: section.worker_listen_address,
    workerLeaseMs: parseDurationMs(section.worker_lease),
    maxWorkerSlots: section.max_worker_slots,
    capabilities: capabilitiesOf(section),
    state: section.state,
    workerGraceMs: parseDurationMs(section.worker_grace),
    keepCompletedMs: parseDurationMs(section.operation_retention),
    maxQueuedActionsPerInstance: section.max_queued_actions_per_instance,
    maxQueuedBytesPerInstance: parseSizeBytes(section.max_queued_bytes_per_instance),
    logger: deps.logger,
    clock: deps.clock,
    metrics: deps.metrics,
    ...storage,
  });
  return withSighupReload(scheduler, [tls, section.worker_tls ? workerTls : undefined, authenticator, workerAuthenticator], deps.logger);
}

/**
 * The worker of `config`. Standalone it dials `worker.scheduler_address` and builds its CAS from
 * `storage.cas`, without local verification (see createStorage); `shared` gives it the in-process
 * scheduler's address and CAS instead.
 */
export async function createWorker(
  config: ResolvedConfig,
  deps: ServerDeps,
  shared?: { schedulerAddress: string; contentAddressableStorage: BlobStore },
): Promise<WorkerHandle> {
  const section = required(config.worker, 'worker');
  const [{ closingAlso, startWorker }, { parseRunAs }] = await Promise.all([import('./worker.js'), import('../lib/worker/sandbox-command.js')]);
  const storage = shared ? undefined : await createStorage({ cas: config.storage.cas }, { clock: deps.clock, logger: deps.logger.child('storage'), metrics: deps.metrics });
  try {
    const worker = await startWorker({
      schedulerAddress: shared?.schedulerAddress ?? required(section.scheduler_address, 'worker.scheduler_address'),
      ...(shared ? {} : workerCredentials(section)),
      contentAddressableStorage: shared?.contentAddressableStorage ?? storage!.contentAddressableStorage,
      slots: section.slots,
      workDir: section.work_dir,
      workerId: section.id ?? defaultWorkerId(section.work_dir),
      platform: Object.fromEntries(Object.entries(section.platform).map(([name, values]) => [name, typeof values === 'string' ? [values] : values])),
      fileCacheMaxSizeBytes: parseSizeBytes(section.file_cache_max_size_bytes),
      runner: section.runner,
      ...(section.run_as === undefined ? {} : { runAs: parseRunAs(section.run_as) }),
      allowRootActions: section.allow_root_actions,
      chroot: section.chroot,
      sandboxReuse: section.sandbox_reuse ?? true,
      limits: {
        memoryBytes: parseSizeBytes(section.limits.memory),
        processes: section.limits.processes,
        fileSizeBytes: parseSizeBytes(section.limits.file_size),
        outputBytes: parseSizeBytes(section.limits.output_size),
      },
      logger: deps.logger,
      clock: deps.clock,
    });
    return closingAlso(worker, () => storage?.close());
  } catch (err) {
    await storage?.close();
    throw err;
  }
}

/** How a standalone worker authenticates to the worker port: `worker.token_file` and `worker.tls`. */
function workerCredentials(section: NonNullable<ResolvedConfig['worker']>): { token?: string; credentials?: grpc.ChannelCredentials } {
  let token: string | undefined;
  if (section.token_file !== undefined) {
    try {
      token = readSecretFile(section.token_file);
    } catch (err) {
      throw new Error(`Failed to read worker.token_file ${section.token_file}: ${(err as Error).message}`);
    }
  }
  const tls = section.tls;
  if (!tls) return { token };
  const read = (file: string | undefined, key: string) => (file === undefined ? null : readFileOrThrow(file, key));
  return { token, credentials: grpc.credentials.createSsl(read(tls.ca_file, 'worker.tls.ca_file'), read(tls.key_file, 'worker.tls.key_file'), read(tls.cert_file, 'worker.tls.cert_file')) };
}

function readFileOrThrow(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`Failed to read ${key} ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
}

/** Stable across restarts of the same worker (host and work dir), distinct for two workers on a host. */
export function defaultWorkerId(workDir: string): string {
  return `${hostname()}:${createHash('sha256').update(resolve(workDir)).digest('hex').slice(0, 16)}`;
}

/** Remote Asset's downloaders: http(s) blobs and archives, under the `asset.allow` URL policy and size limits. */
function assetDownloaders(config: ResolvedConfig): AssetDownloader[] {
  const section = config.asset ?? {};
  return [
    new HttpDownloader({
      policy: new UrlPolicy(section.allow ?? []),
      maxSizeBytes: section.max_download_size === undefined ? undefined : parseSizeBytes(section.max_download_size),
      maxUnpackedSizeBytes: section.max_unpacked_size === undefined ? undefined : parseSizeBytes(section.max_unpacked_size),
    }),
  ];
}

function serverTls(section: TlsSection | undefined): ServerTls | undefined {
  return section && createServerTls({ certFile: section.cert_file, keyFile: section.key_file, clientCaFile: section.client_ca_file });
}

/** `server` with its TLS files and token files re-read on SIGHUP until it closes. */
function withSighupReload<T extends { close(): Promise<void> }>(server: T, reloadable: readonly (ServerTls | Authenticator | undefined)[], logger: Logger): T {
  const stops: (() => void)[] = [];
  for (const r of reloadable) {
    if (r === undefined) continue;
    if ('credentials' in r) stops.push(reloadOnSighup(r, logger));
    else if (r.reload) {
      const reload = r.reload.bind(r);
      const onHup = () => void reload();
      process.on('SIGHUP', onHup);
      stops.push(() => process.off('SIGHUP', onHup));
    }
  }
  if (stops.length === 0) return server;
  const close = server.close.bind(server);
  server.close = () => {
    for (const stop of stops) stop();
    return close();
  };
  return server;
}

function required<T>(value: T | undefined, key: string): T {
  if (value === undefined) throw new TypeError(`Failed to create server: the configuration has no ${key}`);
  return value;
}

/** The Capabilities settings of an apiserver or scheduler section (absent keys keep their defaults). */
function capabilitiesOf(section: { allow_ac_updates?: boolean; digest_functions?: DigestFunction[]; compressors?: TransferCompressor[]; max_receive_message_size?: string | number }): CapabilitiesConfig {
  // A smaller message limit advertises smaller batches, so that a batch always fits a message.
  const messageBytes = section.max_receive_message_size === undefined ? undefined : parseSizeBytes(section.max_receive_message_size);
  return {
    actionCacheUpdateEnabled: section.allow_ac_updates,
    ...(messageBytes !== undefined && messageBytes - BATCH_FRAMING_BYTES < MAX_BATCH_TOTAL_SIZE_BYTES ? { maxBatchTotalSizeBytes: messageBytes - BATCH_FRAMING_BYTES } : {}),
    ...(section.digest_functions ? { digestFunctions: section.digest_functions } : {}),
    ...(section.compressors ? { compressors: section.compressors } : {}),
  };
}

/** What a batch message carries besides its blobs (digests, statuses, framing); message-limits.ts. */
const BATCH_FRAMING_BYTES = 320 * 1024;

/** The smallest message limit that still carries a 1 MiB chunk with framing; below it uploads could not work. */
const MIN_RECEIVE_MESSAGE_BYTES = 1024 * 1024;

/** A client port's limits from its config section (defaults filled in by resolveConfig). */
function portLimitsOf(section: Required<PortLimitsSection>, name: 'apiserver' | 'scheduler'): PortLimits {
  const maxReceiveMessageBytes = parseSizeBytes(section.max_receive_message_size);
  if (maxReceiveMessageBytes < MIN_RECEIVE_MESSAGE_BYTES) {
    throw new ConfigError([{ path: `${name}.max_receive_message_size`, message: `must be at least 1MiB, got ${JSON.stringify(section.max_receive_message_size)}` }]);
  }
  return {
    maxConcurrentStreams: section.max_concurrent_streams,
    maxReceiveMessageBytes,
    maxParkedUploadMemoryBytes: parseSizeBytes(section.max_parked_upload_memory),
    maxPendingUploads: section.max_pending_uploads,
  };
}

/**
 * From the serve commands' flag values to the configuration tree they run with: each flag given sets
 * one key (see serve-flags.ts for the flags), laid over the `--config` file and the defaults.
 */
import type { AuthSection, BzutilConfig, ClientTlsSection, ResolvedConfig, ServeRole, StorageSection, TlsSection, WorkerLimitsSection, WorkerSection } from '../config/config.js';
import { ConfigError } from '../config/config.js';
import { actionCacheFlagConfig, localStorageConfig, redactConfig, remoteStorageConfig, sqliteStateIn } from '../config/defaults.js';
import { readConfigFile, resolveConfig } from '../config/resolve-config.js';
import { parseDurationMs, parseSizeBytes } from '../util/units.js';
import { parseRunAs } from '../worker/sandbox-command.js';
import { usageError } from './base-command.js';
import { parseKeyValues } from './flags.js';

/** The flag values the serve commands may have; each command declares a subset. */
export interface ServeFlagValues {
  config?: string;
  print_config?: boolean;
  log_level?: string;
  http_listen?: string;
  shutdown_grace_period?: string;
  listen?: string;
  apiserver_listen?: string;
  scheduler_listen?: string;
  worker_lease?: string;
  max_worker_slots?: number;
  worker_listen?: string;
  allow_ac_updates?: boolean;
  processes?: number;
  asset_allow?: string[];
  tls_cert?: string;
  tls_key?: string;
  tls_client_ca?: string;
  tls_ca?: string;
  auth_tokens?: string;
  jwt_jwks?: string;
  jwt_issuer?: string;
  jwt_audience?: string;
  worker_tokens?: string;
  worker_tls_cert?: string;
  worker_tls_key?: string;
  worker_tls_client_ca?: string;
  token_file?: string;
  state?: string;
  worker_grace?: string;
  operation_retention?: string;
  data_dir?: string;
  storage_dir?: string;
  max_size?: string;
  memory_cache?: string;
  in_memory?: boolean;
  cas?: string;
  ac?: string;
  scheduler?: string;
  slots?: number;
  work_dir?: string;
  platform?: string[];
  runner?: 'local' | 'bwrap';
  run_as?: string;
  allow_root_actions?: boolean;
  chroot?: boolean;
  action_memory?: string;
  action_processes?: number;
  action_file_size?: string;
  action_output_size?: string;
}

/** The keys the given flags set, as a tree to lay over the config file. Bad values are usage errors naming the flag. */
export function flagOverrides(role: ServeRole, flags: ServeFlagValues): BzutilConfig {
  const tree: BzutilConfig = {};
  const apiserverListen = role === 'apiserver' ? flags.listen : flags.apiserver_listen;
  const schedulerListen = role === 'scheduler' ? flags.listen : flags.scheduler_listen;
  const allowAc = flags.allow_ac_updates ? true : undefined;
  if (apiserverListen !== undefined || (allowAc && role !== 'scheduler')) tree.apiserver = { listen_address: apiserverListen, allow_ac_updates: role === 'scheduler' ? undefined : allowAc };
  if (flags.processes !== undefined && role === 'apiserver') tree.apiserver = { ...tree.apiserver, processes: flags.processes };
  const state = stateOverride(role, flags);
  const schedulerDurations = ['worker_lease', 'worker_grace', 'operation_retention'] as const;
  if (
    schedulerListen !== undefined ||
    state !== undefined ||
    schedulerDurations.some((flag) => flags[flag] !== undefined) ||
    flags.max_worker_slots !== undefined ||
    flags.worker_listen !== undefined ||
    flags.worker_tokens !== undefined ||
    (allowAc && role !== 'apiserver')
  ) {
    for (const flag of schedulerDurations) {
      if (flags[flag] !== undefined) flagValue(flag, () => parseDurationMs(flags[flag]!));
    }
    tree.scheduler = {
      listen_address: schedulerListen,
      worker_lease: flags.worker_lease,
      max_worker_slots: flags.max_worker_slots,
      worker_listen_address: flags.worker_listen,
      worker_tokens_file: flags.worker_tokens,
      allow_ac_updates: role === 'apiserver' ? undefined : allowAc,
      state,
      worker_grace: flags.worker_grace,
      operation_retention: flags.operation_retention,
    };
  }
  const worker: WorkerSection = {
    slots: flags.slots,
    work_dir: flags.work_dir,
    scheduler_address: flags.scheduler,
    platform: flags.platform === undefined ? undefined : platformTree(flags.platform),
    ...runnerOverrides(flags),
    ...(role === 'worker' ? workerCredentialOverrides(flags) : {}),
  };
  if (Object.values(worker).some((v) => v !== undefined)) tree.worker = worker;
  const tls = role === 'worker' ? undefined : tlsOverride(flags);
  if (tls && role !== 'scheduler' && role !== 'worker') tree.apiserver = { ...tree.apiserver, tls };
  if (tls && role !== 'apiserver' && role !== 'worker') tree.scheduler = { ...tree.scheduler, tls };
  const workerTls = workerTlsOverride(flags);
  if (workerTls) tree.scheduler = { ...tree.scheduler, worker_tls: workerTls };
  const auth = authOverride(flags);
  if (auth) tree.auth = auth;
  const storage = storageOverride(role, flags);
  if (storage) tree.storage = storage;
  if (flags.asset_allow?.length && role !== 'worker') tree.asset = { allow: flags.asset_allow };
  if (flags.log_level !== undefined) tree.log_level = flags.log_level as BzutilConfig['log_level'];
  if (flags.http_listen !== undefined) tree.http = { listen_address: flags.http_listen };
  if (flags.shutdown_grace_period !== undefined) {
    flagValue('shutdown_grace_period', () => parseDurationMs(flags.shutdown_grace_period!, { allowZero: true }));
    tree.shutdown_grace_period = flags.shutdown_grace_period;
  }
  return tree;
}

/** `--state`, else the state file that `--storage_dir` (serve all) or `--data_dir` (serve scheduler) implies; `--in_memory` keeps it in memory. */
function stateOverride(role: ServeRole, flags: ServeFlagValues): string | undefined {
  if (flags.state !== undefined) return flags.state;
  if (role === 'scheduler' && flags.data_dir !== undefined) return sqliteStateIn(flags.data_dir);
  if (role !== 'all') return undefined;
  if (flags.in_memory) return 'memory';
  return flags.storage_dir === undefined ? undefined : sqliteStateIn(flags.storage_dir);
}

/** The runner keys the sandbox flags set; sizes and run_as are checked here so that errors name the flag. */
function runnerOverrides(flags: ServeFlagValues): WorkerSection {
  const size = (flag: string, value: string | undefined) => (value === undefined ? undefined : (flagValue(flag, () => parseSizeBytes(value)), value));
  if (flags.run_as !== undefined) flagValue('run_as', () => parseRunAs(flags.run_as!));
  const limits: WorkerLimitsSection = {
    memory: size('action_memory', flags.action_memory),
    processes: flags.action_processes,
    file_size: size('action_file_size', flags.action_file_size),
    output_size: size('action_output_size', flags.action_output_size),
  };
  return {
    runner: flags.runner,
    run_as: flags.run_as,
    allow_root_actions: flags.allow_root_actions,
    chroot: flags.chroot,
    limits: Object.values(limits).some((v) => v !== undefined) ? limits : undefined,
  };
}

function authOverride(flags: ServeFlagValues): AuthSection | undefined {
  const jwt =
    flags.jwt_jwks === undefined
      ? undefined
      : { jwks: flags.jwt_jwks, ...(flags.jwt_issuer === undefined ? {} : { issuer: flags.jwt_issuer }), ...(flags.jwt_audience === undefined ? {} : { audience: flags.jwt_audience }) };
  if (flags.auth_tokens === undefined && jwt === undefined) return undefined;
  return { ...(flags.auth_tokens === undefined ? {} : { tokens_file: flags.auth_tokens }), ...(jwt ? { jwt } : {}) };
}

/** `--worker_tls_*`: the worker port's own TLS; a client CA alone reuses the client port's certificate (--tls_cert/--tls_key). */
function workerTlsOverride(flags: ServeFlagValues): TlsSection | undefined {
  if (flags.worker_tls_cert === undefined && flags.worker_tls_key === undefined && flags.worker_tls_client_ca === undefined) return undefined;
  const cert = flags.worker_tls_cert ?? flags.tls_cert;
  const key = flags.worker_tls_key ?? flags.tls_key;
  if (cert === undefined || key === undefined || (flags.worker_tls_cert === undefined) !== (flags.worker_tls_key === undefined)) {
    throw usageError('Invalid worker TLS flags: --worker_tls_cert and --worker_tls_key go together (--worker_tls_client_ca alone needs --tls_cert and --tls_key)');
  }
  return { cert_file: cert, key_file: key, ...(flags.worker_tls_client_ca === undefined ? {} : { client_ca_file: flags.worker_tls_client_ca }) };
}

/** `serve worker --token_file --tls_ca --tls_cert --tls_key`: how it dials the worker port. */
function workerCredentialOverrides(flags: ServeFlagValues): WorkerSection {
  const tls = { ca_file: flags.tls_ca, cert_file: flags.tls_cert, key_file: flags.tls_key };
  if ((flags.tls_cert === undefined) !== (flags.tls_key === undefined)) throw usageError('Invalid TLS flags: --tls_cert and --tls_key go together');
  return {
    token_file: flags.token_file,
    tls: Object.values(tls).some((v) => v !== undefined) ? (dropUndefinedKeys(tls) as ClientTlsSection) : undefined,
  };
}

function dropUndefinedKeys(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

function tlsOverride(flags: ServeFlagValues): TlsSection | undefined {
  if (flags.tls_cert === undefined && flags.tls_key === undefined && flags.tls_client_ca === undefined) return undefined;
  if (flags.tls_cert === undefined || flags.tls_key === undefined) throw usageError('Invalid TLS flags: --tls_cert and --tls_key go together (and --tls_client_ca needs both)');
  return { cert_file: flags.tls_cert, key_file: flags.tls_key, ...(flags.tls_client_ca === undefined ? {} : { client_ca_file: flags.tls_client_ca }) };
}

function storageOverride(role: ServeRole, flags: ServeFlagValues): StorageSection | undefined {
  const storage = casOverride(role, flags);
  if (flags.ac === undefined) return storage;
  return { ...storage, action_cache: flagValue('ac', () => actionCacheFlagConfig(flags.ac!)) };
}

function casOverride(role: ServeRole, flags: ServeFlagValues): StorageSection | undefined {
  if (flags.cas !== undefined) return flagValue('cas', () => remoteStorageConfig(flags.cas!, { actionCache: role !== 'worker' }));
  if (flags.storage_dir === undefined && flags.max_size === undefined && flags.memory_cache === undefined && !flags.in_memory) return undefined;
  return localStorageConfig({
    storageDir: flags.storage_dir,
    maxSizeBytes: flags.max_size === undefined ? undefined : flagValue('max_size', () => parseSizeBytes(flags.max_size!)),
    memoryCacheSizeBytes: flags.memory_cache === undefined ? undefined : flagValue('memory_cache', () => parseSizeBytes(flags.memory_cache!, { allowZero: true })),
    inMemory: flags.in_memory,
  });
}

function platformTree(entries: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const { name, value } of flagValue('platform', () => parseKeyValues(entries, 'platform'))) (out[name] ??= []).push(value);
  return out;
}

function flagValue<T>(flag: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw usageError(`Invalid --${flag}: ${(err as Error).message}`, err);
  }
}

/**
 * The tree a serve command runs with: defaults, then `--config`, then the other flags. An unreadable
 * or invalid file, or a flag that makes the tree invalid, is a usage error (exit 2) naming the keys.
 */
export async function resolveServeConfig(role: ServeRole, flags: ServeFlagValues): Promise<ResolvedConfig> {
  const overrides = flagOverrides(role, flags);
  try {
    const file = flags.config === undefined ? undefined : { tree: await readConfigFile(flags.config), source: flags.config };
    return resolveConfig({ role, file, overrides });
  } catch (err) {
    if (err instanceof ConfigError) throw usageError(err.message, err);
    throw err;
  }
}

/**
 * What `--print_config` prints: the effective tree as JSON (which is also valid YAML). The tree names
 * secret files (token files, keys) rather than holding secrets; a URL's password is redacted.
 */
export function formatConfig(config: ResolvedConfig): string {
  return `${JSON.stringify(redactConfig(config), null, 2)}\n`;
}

/**
 * The start of every serve command: the resolved tree to start from, or undefined once it has been
 * printed for `--print_config` (the command then starts nothing).
 */
export async function configToServe(role: ServeRole, flags: ServeFlagValues): Promise<ResolvedConfig | undefined> {
  const config = await resolveServeConfig(role, flags);
  if (!flags.print_config) return config;
  process.stdout.write(formatConfig(config));
  return undefined;
}

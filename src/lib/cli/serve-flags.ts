/**
 * Flags shared by the `serve` commands. Each flag is a shorthand for one key of the configuration
 * tree (lib/config; schema/bzutil-config.schema.json) and overrides the `--config` file; a flag not
 * given leaves the file's value or the default. The storage flags (`--storage_dir`, `--max_size`,
 * `--memory_cache`, `--in_memory`) together set the `storage` subtree to the standard local layout,
 * `--cas` sets it to a remote apiserver (or a `sharding` node over several), and `--ac` sets
 * `storage.action_cache` alone: for any other layout, write it in the file.
 */
import { Flags } from '@oclif/core';

/** `--ac`, on serve apiserver and serve scheduler. */
export const actionCacheFlag = {
  ac: Flags.string({
    summary: 'The action cache: redis://[:password@]host:port[/db] (storage.action_cache.redis), shared by every apiserver and scheduler, or an apiserver host:port.',
    description: 'With a sharded CAS (--cas a:12100,b:12100) give every apiserver and scheduler the same Redis, so a result stored by one is a hit on all.',
    helpValue: 'redis://HOST:PORT',
  }),
};

/** `--config` and `--print_config`, on every serve command. */
export const configFlags = {
  config: Flags.string({
    summary: 'Configuration file (YAML or JSON, see schema/bzutil-config.schema.json); flags override it.',
    helpValue: 'FILE',
  }),
  print_config: Flags.boolean({
    summary: 'Print the effective configuration (defaults, then the file, then the flags) as JSON and exit.',
    default: false,
    aliases: ['print-config'],
  }),
};

export const schedulerFlags = {
  worker_lease: Flags.string({
    summary: 'How long a worker may go silent before its actions are requeued (scheduler.worker_lease; default 5s).',
    aliases: ['worker-lease'],
  }),
  worker_listen: Flags.string({
    summary: 'host:port of the private worker port that workers dial (scheduler.worker_listen_address; serve scheduler: default 127.0.0.1:9098; serve all: none, its own worker uses a private Unix socket).',
    aliases: ['worker-listen'],
  }),
  max_worker_slots: Flags.integer({
    summary: 'The most slots one worker is believed to have; a worker announcing more is capped (scheduler.max_worker_slots; default 256).',
    min: 1,
    aliases: ['max-worker-slots'],
  }),
  state: Flags.string({
    summary: 'Where operations, the queue and leases live: memory, sqlite:PATH or redis://HOST:PORT[/DB] (scheduler.state).',
    description:
      'Defaults to sqlite:<storage_dir>/scheduler.db (serve all; memory with --in_memory) or sqlite:<data_dir>/scheduler.db (serve scheduler). redis:// is shared by a fleet of schedulers (see README "Running a fleet").',
    helpValue: 'memory|sqlite:PATH|redis://HOST:PORT[/DB]',
  }),
  worker_grace: Flags.string({
    summary: 'After a restart, how long a running action waits for its worker before it is requeued (scheduler.worker_grace; default 5s).',
    aliases: ['worker-grace'],
  }),
  operation_retention: Flags.string({
    summary: 'How long finished operations stay queryable (scheduler.operation_retention; default 1h).',
    aliases: ['operation-retention'],
  }),
};

/** The operator's surface, on every serve command. */
export const operatorFlags = {
  http_listen: Flags.string({
    summary: 'host:port of the HTTP port serving /metrics, port 0 picks a free port, empty turns it off (http.listen_address).',
    description: 'Defaults: serve all 127.0.0.1:8080, apiserver 127.0.0.1:8081, scheduler 127.0.0.1:8082, worker 127.0.0.1:8083.',
    aliases: ['http-listen'],
  }),
  shutdown_grace_period: Flags.string({
    summary: 'On SIGTERM, how long running uploads and actions may take to finish (shutdown_grace_period; default 30s).',
    aliases: ['shutdown-grace-period'],
  }),
};

/** Remote Asset downloads may reach addresses matching these URL patterns (asset.allow). */
export const assetAllowFlag = {
  asset_allow: Flags.string({
    summary: 'Let Remote Asset fetch URLs matching PATTERN even on loopback/private addresses (asset.allow; repeatable; * = any).',
    description: 'By default FetchBlob refuses URLs whose host resolves to a loopback, link-local, private or IPv4-mapped address (PERMISSION_DENIED naming the rule). Example: --asset_allow "http://127.0.0.1:*".',
    helpValue: 'PATTERN',
    multiple: true,
    aliases: ['asset-allow'],
  }),
};

/** On serve all it sets both apiserver.allow_ac_updates and scheduler.allow_ac_updates. */
export const allowAcUpdatesFlag = {
  allow_ac_updates: Flags.boolean({
    summary: 'Let clients write the action cache with UpdateActionResult (apiserver/scheduler.allow_ac_updates; default off).',
    description:
      'Off, Capabilities advertise update_enabled false, UpdateActionResult answers PERMISSION_DENIED and only the scheduler writes the results of remote executions. Bazel with --remote_cache alone (no remote execution) uploads its local results and needs it on.',
    aliases: ['allow-ac-updates'],
  }),
};

/** serve apiserver only: apiserver.processes. */
export const processesFlag = {
  processes: Flags.integer({
    summary: 'Processes serving the port, sharing the disk stores (apiserver.processes; default 1).',
    description:
      'With N > 1 this process forks N apiserver processes on the same port (node:cluster, connections handed out in turn), restarts one that crashes, and serves the HTTP port itself (/metrics sums them). Each evicts only what it wrote, within max_size / N. Not with --in_memory or a packed store.',
    min: 1,
    max: 64,
  }),
};

/** TLS on the client ports (apiserver.tls / scheduler.tls); serve all sets both. */
export const serverTlsFlags = {
  tls_cert: Flags.string({ summary: 'Serve TLS with this certificate chain (PEM; *.tls.cert_file); needs --tls_key. Re-read on SIGHUP.', helpValue: 'FILE', aliases: ['tls-cert'] }),
  tls_key: Flags.string({ summary: 'Private key of --tls_cert (PEM; *.tls.key_file).', helpValue: 'FILE', aliases: ['tls-key'] }),
  tls_client_ca: Flags.string({
    summary: 'Require client certificates signed by this CA (mTLS; *.tls.client_ca_file).',
    helpValue: 'FILE',
    aliases: ['tls-client-ca'],
  }),
};

/** Authentication of the client ports and the HTTP port (auth.*); serve all, apiserver, scheduler. */
export const authFlags = {
  auth_tokens: Flags.string({
    summary: 'Require a bearer token from this token file (JSON or YAML, SHA-256 of each token; auth.tokens_file). Re-read on SIGHUP.',
    description: 'Make a token and its entry with: bzutil token create --name ci --instances main --permissions cas.read,cas.write,ac.read,execute',
    helpValue: 'FILE',
    aliases: ['auth-tokens'],
  }),
  jwt_jwks: Flags.string({
    summary: 'Accept JWTs signed by a key of this JWKS, a file or an http(s) URL (auth.jwt.jwks); permissions and instances come from claims.',
    helpValue: 'FILE|URL',
    aliases: ['jwt-jwks'],
  }),
  jwt_issuer: Flags.string({ summary: 'Required iss claim of JWTs (auth.jwt.issuer).', aliases: ['jwt-issuer'], dependsOn: ['jwt_jwks'] }),
  jwt_audience: Flags.string({ summary: 'Required aud claim of JWTs (auth.jwt.audience).', aliases: ['jwt-audience'], dependsOn: ['jwt_jwks'] }),
};

/** Credentials on the scheduler's worker port (scheduler.worker_tokens_file, scheduler.worker_tls); serve all and scheduler. */
export const workerPortAuthFlags = {
  worker_tokens: Flags.string({
    summary: 'Workers must send a token listed in this token file (scheduler.worker_tokens_file).',
    description: 'A worker port on a non-loopback address needs this or --worker_tls_client_ca. Workers send theirs with serve worker --token_file.',
    helpValue: 'FILE',
    aliases: ['worker-tokens'],
  }),
  worker_tls_cert: Flags.string({ summary: 'TLS certificate of the worker port (scheduler.worker_tls.cert_file; default: --tls_cert).', helpValue: 'FILE', aliases: ['worker-tls-cert'] }),
  worker_tls_key: Flags.string({ summary: 'Its private key (scheduler.worker_tls.key_file).', helpValue: 'FILE', aliases: ['worker-tls-key'] }),
  worker_tls_client_ca: Flags.string({
    summary: 'Workers must present a certificate signed by this CA (scheduler.worker_tls.client_ca_file).',
    helpValue: 'FILE',
    aliases: ['worker-tls-client-ca'],
  }),
};

/** How `serve worker` authenticates to the scheduler's worker port (worker.token_file, worker.tls). */
export const workerCredentialFlags = {
  token_file: Flags.string({ summary: "File holding this worker's token for the scheduler's worker port (worker.token_file).", helpValue: 'FILE', aliases: ['token-file'] }),
  tls_ca: Flags.string({ summary: "Trust this CA for the worker port's certificate; turns TLS on (worker.tls.ca_file).", helpValue: 'FILE', aliases: ['tls-ca'] }),
  tls_cert: Flags.string({ summary: 'Client certificate for a worker port that requires one (worker.tls.cert_file); needs --tls_key.', helpValue: 'FILE', aliases: ['tls-cert'] }),
  tls_key: Flags.string({ summary: 'Private key of --tls_cert (worker.tls.key_file).', helpValue: 'FILE', aliases: ['tls-key'] }),
};

/** How much the servers log on stderr. */
export const logLevelFlag = Flags.option({
  summary: 'Least severe log level printed on stderr (log_level; default info).',
  options: ['debug', 'info', 'warn', 'error'] as const,
  aliases: ['log-level'],
})();

export const storageFlags = {
  storage_dir: Flags.string({
    summary: 'Directory for the CAS and action cache, created if missing (storage.*.disk.path).',
    description: 'Defaults to $XDG_CACHE_HOME/bzutil/storage or ~/.cache/bzutil/storage.',
    aliases: ['storage-dir'],
  }),
  max_size: Flags.string({
    summary: 'CAS capacity; least recently used blobs are evicted beyond it (storage.cas…max_size_bytes; default 10G).',
    description: 'The action cache gets a sixteenth of it, at least 64 MiB.',
    aliases: ['max-size'],
  }),
  memory_cache: Flags.string({
    summary: 'Memory for recently used small blobs in front of the disk store (storage.cas.small_blob_caching; default 64M, 0 turns it off).',
    description:
      'Blobs of up to 1 MiB that were recently written or read are served from memory, saving the file system round trips of a warm build; the action cache gets an eighth of it (at least 8 MiB) on top.',
    aliases: ['memory-cache'],
  }),
  in_memory: Flags.boolean({
    summary: 'Keep the CAS and action cache in memory only, lost on exit (storage.*.memory).',
    aliases: ['in-memory'],
  }),
};

export const workerFlags = {
  slots: Flags.integer({
    summary: 'How many actions the worker runs at once (worker.slots).',
    description: 'Defaults to the number of CPUs.',
    min: 0,
  }),
  work_dir: Flags.string({
    summary: 'Worker scratch space: one directory per running action plus the input file cache (worker.work_dir).',
    description: 'Defaults to $XDG_CACHE_HOME/bzutil/work (serve worker: …/worker) or ~/.cache/bzutil/…. It must not be shared by two workers.',
    aliases: ['work-dir'],
  }),
  platform: Flags.string({
    summary: 'Platform properties this worker satisfies, as name=value, comma-separated or repeated (worker.platform).',
    multiple: true,
    delimiter: ',',
  }),
};

/**
 * How a worker runs actions (see the README's "Security model"), shorthands for the `worker.runner`,
 * `worker.chroot`, `worker.run_as`, `worker.allow_root_actions` and `worker.limits` keys. Kept apart
 * from workerFlags so that commands adopt them only together with a worker that reads them.
 */
export const runnerFlags = {
  runner: Flags.option({
    summary: 'How actions run: bwrap (namespaces, unprivileged uid) or local (plain child processes) (worker.runner).',
    description: 'Defaults to bwrap when /usr/bin/bwrap is installed, else local with a loud warning.',
    options: ['local', 'bwrap'] as const,
  })(),
  run_as: Flags.string({
    summary: 'Host uid:gid actions run as when the worker is root (worker.run_as; bwrap default 65534:65534).',
    aliases: ['run-as'],
  }),
  allow_root_actions: Flags.boolean({
    summary: 'Let actions run as root; input files are then copied, never hard-linked (worker.allow_root_actions).',
    aliases: ['allow-root-actions'],
  }),
  chroot: Flags.boolean({
    summary: 'Run every action chrooted into its input root (worker.chroot; bwrap runner; per action: platform chroot=true).',
  }),
  action_memory: Flags.string({ summary: 'Memory per action, e.g. 4G (worker.limits.memory; default 4GiB).', aliases: ['action-memory'] }),
  action_processes: Flags.integer({ summary: 'Processes per action at once (worker.limits.processes; default 1024).', min: 1, aliases: ['action-processes'] }),
  action_file_size: Flags.string({ summary: 'Largest file an action may write, e.g. 16G (worker.limits.file_size; default 16GiB).', aliases: ['action-file-size'] }),
  action_output_size: Flags.string({ summary: "Total bytes of an action's outputs, e.g. 16G (worker.limits.output_size; default 16GiB).", aliases: ['action-output-size'] }),
};

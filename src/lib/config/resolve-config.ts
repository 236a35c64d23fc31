/**
 * From defaults, a config file and flags to the one tree the servers are built from. Order: the
 * role's defaults, then the file, then the flags (each flag sets one key, or for the storage
 * flags the `storage` subtree). Sections merge key by key, and so does `worker.limits`; a store tree
 * (`storage.cas`, `storage.action_cache`) and `worker.platform` are replaced whole, because merging two store kinds
 * would make a node with two kinds. Every issue names the key's path; nothing is started on error.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import type { BlobStoreConfig } from '../blobstore/config.js';
import { type BzutilConfig, ConfigError, type ConfigIssue, ROLE_SECTIONS, type ResolvedConfig, type ServeRole } from './config.js';
import { isLoopbackAddress } from '../util/address.js';
import { defaultConfig } from './defaults.js';
import { validateConfigTree } from './validate-config.js';

/** Reads a JSON or YAML file (YAML is a superset of JSON, so one parser reads both). */
export async function readConfigFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ path: '(file)', message: `cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }], file);
  }
  const { parse: parseYaml } = await import('yaml'); // only with --config: flags alone need no YAML parser
  try {
    return parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError([{ path: '(file)', message: `is not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}` }], file);
  }
}

export interface ResolveConfigInput {
  role: ServeRole;
  /** The parsed config file, if any, and its name for messages. */
  file?: { tree: unknown; source: string };
  /** What the flags set. */
  overrides?: BzutilConfig;
}

export function resolveConfig(input: ResolveConfigInput): ResolvedConfig {
  const { role } = input;
  let fileTree: BzutilConfig = {};
  if (input.file) {
    const issues = validateConfigTree(input.file.tree);
    if (issues.length === 0) issues.push(...roleIssues(input.file.tree as BzutilConfig, role));
    if (issues.length > 0) throw new ConfigError(issues, input.file.source);
    fileTree = input.file.tree as BzutilConfig;
  }
  const merged = mergeConfig(mergeConfig(defaultConfig(role), fileTree), input.overrides ?? {});
  expandHome(merged);
  const issues = validateConfigTree(merged);
  issues.push(...roleIssues(merged, role));
  if (role === 'worker' && merged.worker?.slots === 0) issues.push({ path: 'worker.slots', message: 'must be at least 1 for serve worker' });
  if (issues.length === 0) issues.push(...runnerIssues(merged), ...workerPortIssues(merged), ...processesIssues(merged, role));
  if (issues.length > 0) throw new ConfigError(issues, input.overrides && input.file ? `${input.file.source} with the flags` : input.file?.source);
  return merged as ResolvedConfig;
}

/** Sections (and storage keys) that `role` does not read are refused rather than ignored. */
function roleIssues(tree: BzutilConfig, role: ServeRole): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const { sections, storage } = ROLE_SECTIONS[role];
  for (const key of Object.keys(tree) as (keyof BzutilConfig)[]) {
    if (!sections.includes(key)) issues.push({ path: key, message: `is not used by "serve ${role}" (it reads ${sections.join(', ')})` });
  }
  for (const key of Object.keys(tree.storage ?? {}) as (keyof NonNullable<BzutilConfig['storage']>)[]) {
    if (!storage.includes(key)) issues.push({ path: `storage.${key}`, message: `is not used by "serve ${role}"` });
  }
  if (role === 'all' && tree.worker?.scheduler_address !== undefined) {
    issues.push({ path: 'worker.scheduler_address', message: 'is not used by "serve all": its worker dials the scheduler of the same process' });
  }
  return issues;
}

/**
 * Several apiserver processes share only what is on disk: a memory store would be one per process
 * (a blob uploaded through one missing through the others), and serve all keeps one process.
 */
function processesIssues(tree: BzutilConfig, role: ServeRole): ConfigIssue[] {
  if ((tree.apiserver?.processes ?? 1) === 1) return [];
  if (role !== 'apiserver') return [{ path: 'apiserver.processes', message: `is only for "serve apiserver" ("serve ${role}" runs one process)` }];
  const memory = nodePath(tree.storage, 'storage', 'memory');
  if (memory) return [{ path: 'apiserver.processes', message: `needs stores on disk, but ${memory} is in memory, one per process (drop --in_memory or the memory node)` }];
  const packed = nodePath(tree.storage, 'storage', 'packed');
  return packed ? [{ path: 'apiserver.processes', message: `cannot share ${packed}: each process would index only its own appends` }] : [];
}

/** The key path of the first node of `kind` in a storage tree, if any. */
function nodePath(node: unknown, at: string, kind: string): string | undefined {
  if (Array.isArray(node)) return node.map((child, i) => nodePath(child, `${at}[${i}]`, kind)).find((p) => p !== undefined);
  if (!isPlainObject(node)) return undefined;
  for (const [key, child] of Object.entries(node)) {
    if (key === kind) return `${at}.${kind}`;
    const found = nodePath(child, `${at}.${key}`, kind);
    if (found) return found;
  }
  return undefined;
}

/** Combinations of runner keys that the worker would refuse at start, refused here with their paths. */
function runnerIssues(tree: BzutilConfig): ConfigIssue[] {
  const worker = tree.worker;
  if (!worker) return [];
  const issues: ConfigIssue[] = [];
  if (worker.chroot && worker.runner !== 'bwrap') issues.push({ path: 'worker.chroot', message: 'needs worker.runner bwrap' });
  if (worker.run_as !== undefined && /^\s*0:/.test(worker.run_as) && !worker.allow_root_actions) {
    issues.push({ path: 'worker.run_as', message: 'is root: set worker.allow_root_actions to mean it' });
  }
  return issues;
}

/**
 * A worker port other hosts can reach must know its workers: otherwise anyone who reaches it takes
 * queued actions (their argv and environment may hold secrets) and reports forged results.
 */
function workerPortIssues(tree: BzutilConfig): ConfigIssue[] {
  const scheduler = tree.scheduler;
  const address = scheduler?.worker_listen_address;
  if (address === undefined || isLoopbackAddress(address)) return [];
  const workerTls = scheduler!.worker_tls ?? scheduler!.tls;
  if (scheduler!.worker_tokens_file !== undefined || workerTls?.client_ca_file !== undefined) return [];
  return [
    {
      path: 'scheduler.worker_listen_address',
      message: `${address} is not a loopback address, so workers must authenticate: set scheduler.worker_tokens_file (--worker_tokens FILE) or scheduler.worker_tls.client_ca_file (--worker_tls_client_ca FILE), or bind 127.0.0.1`,
    },
  ];
}

/** Subsections merged key by key like sections (the rest of a section's values are replaced whole). */
const MERGED_SUBSECTIONS: Readonly<Record<string, readonly string[]>> = { worker: ['limits'], auth: ['jwt'] };

/** `overlay` over `base`, per the rules in the module comment. Neither argument is modified. */
export function mergeConfig(base: BzutilConfig, overlay: BzutilConfig): BzutilConfig {
  const out = structuredClone(base) as Record<string, unknown>;
  for (const [key, value] of Object.entries(structuredClone(overlay))) {
    if (value === undefined) continue;
    const current = out[key];
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && typeof current === 'object' && current !== null) {
      // Sections merge key by key; their values (store trees, platform maps) are replaced whole.
      const merged: Record<string, unknown> = { ...(current as object), ...dropUndefined(value as Record<string, unknown>) };
      for (const sub of MERGED_SUBSECTIONS[key] ?? []) {
        const [was, now] = [(current as Record<string, unknown>)[sub], (value as Record<string, unknown>)[sub]];
        if (isPlainObject(was) && isPlainObject(now)) merged[sub] = { ...was, ...dropUndefined(now) };
      }
      out[key] = merged;
    } else {
      out[key] = value;
    }
  }
  return out as BzutilConfig;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function dropUndefined(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

/** `~/x` means the user's home in paths, as in a shell. */
function expandHome(tree: BzutilConfig): void {
  const expand = (p: string) => (p === '~' || p.startsWith('~/') ? homedir() + p.slice(1) : p);
  if (tree.worker?.work_dir) tree.worker.work_dir = expand(tree.worker.work_dir);
  const state = tree.scheduler?.state;
  if (state?.startsWith('sqlite:')) tree.scheduler!.state = `sqlite:${expand(state.slice('sqlite:'.length))}`;
  const walk = (node: BlobStoreConfig | undefined): void => {
    if (!node || typeof node !== 'object') return;
    for (const body of Object.values(node) as Record<string, unknown>[]) {
      if (typeof body !== 'object' || body === null) continue;
      if (typeof body.path === 'string') body.path = expand(body.path);
      for (const child of ['backend', 'slow', 'fast']) walk(body[child] as BlobStoreConfig | undefined);
      if (Array.isArray(body.shards)) for (const shard of body.shards as { backend?: BlobStoreConfig }[]) walk(shard?.backend);
    }
  };
  walk(tree.storage?.cas);
  walk(tree.storage?.action_cache as BlobStoreConfig | undefined);
  walk(tree.storage?.asset);
}

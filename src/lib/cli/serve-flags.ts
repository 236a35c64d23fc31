/**
 * Flags shared by the `serve` commands, and the defaults that make `bzutil serve all` work with no
 * configuration: storage and scratch space under the user's cache directory, one worker slot per CPU.
 */
import { Flags } from '@oclif/core';
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { parseKeyValues } from './flags.js';

/** `$XDG_CACHE_HOME/bzutil`, else `~/.cache/bzutil`. */
export function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'bzutil');
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };

/** Parses sizes like `512M`, `10G`, `1.5GiB` or plain bytes. */
export function parseSizeBytes(text: string, opts: { allowZero?: boolean } = {}): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new Error(`Invalid size ${JSON.stringify(text)}: use bytes or a number with K, M, G or T (e.g. 10G)`);
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes < 0 || (bytes === 0 && !opts.allowZero)) {
    throw new Error(`Invalid size ${JSON.stringify(text)}: must be positive`);
  }
  return bytes;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses durations like `500ms`, `30s`, `5m` or `1h` (a bare number is seconds). */
export function parseDurationMs(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) throw new Error(`Invalid duration ${JSON.stringify(text)}: use a number with ms, s, m or h (e.g. 30s)`);
  const ms = Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 's']!);
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new Error(`Invalid duration ${JSON.stringify(text)}: must be positive`);
  return ms;
}

export const schedulerFlags = {
  worker_lease: Flags.string({
    summary: 'How long a worker may go silent before its actions are requeued on other workers (e.g. 30s).',
    default: '30s',
    aliases: ['worker-lease'],
  }),
};

/** How much the servers log on stderr. */
export const logLevelFlag = Flags.option({
  summary: 'Least severe log level printed on stderr.',
  options: ['debug', 'info', 'warn', 'error'] as const,
  default: 'info',
  aliases: ['log-level'],
})();

export const storageFlags = {
  storage_dir: Flags.string({
    summary: 'Directory for the CAS and action cache (created if missing).',
    description: 'Defaults to $XDG_CACHE_HOME/bzutil/storage or ~/.cache/bzutil/storage.',
    aliases: ['storage-dir'],
  }),
  max_size: Flags.string({
    summary: 'CAS capacity; least recently used blobs are evicted beyond it (e.g. 10G).',
    default: '10G',
    aliases: ['max-size'],
  }),
  memory_cache: Flags.string({
    summary: 'Memory for recently used small blobs in front of the disk store (e.g. 256M; 0 turns it off).',
    description:
      'Blobs of up to 1 MiB that were recently written or read are served from memory, saving the file system round trips of a warm build; the action cache gets an eighth of it (at least 8 MiB) on top.',
    default: '64M',
    aliases: ['memory-cache'],
  }),
  in_memory: Flags.boolean({
    summary: 'Keep the CAS and action cache in memory only (lost on exit).',
    default: false,
    aliases: ['in-memory'],
  }),
};

export const workerFlags = {
  slots: Flags.integer({
    summary: 'How many actions the worker runs at once.',
    description: 'Defaults to the number of CPUs.',
    min: 0,
  }),
  work_dir: Flags.string({
    summary: 'Worker scratch space: one directory per running action plus the input file cache.',
    description: 'Defaults to $XDG_CACHE_HOME/bzutil/work or ~/.cache/bzutil/work. It must not be shared by two workers.',
    aliases: ['work-dir'],
  }),
  platform: Flags.string({
    summary: 'Platform properties this worker satisfies, as name=value (comma-separated or repeated).',
    multiple: true,
    delimiter: ',',
    default: [],
  }),
};

/**
 * How a worker runs actions (see the README's "Security model"). Kept apart from workerFlags so that
 * commands adopt them only together with passing them on to startWorker.
 */
export const runnerFlags = {
  runner: Flags.option({
    summary: 'How actions run: bwrap (namespaces, unprivileged uid) or local (plain child processes).',
    description: 'Defaults to bwrap when /usr/bin/bwrap is installed, else local with a loud warning.',
    options: ['local', 'bwrap'] as const,
  })(),
  run_as: Flags.string({
    summary: 'Host uid:gid actions run as when the worker is root (bwrap default 65534:65534).',
    aliases: ['run-as'],
  }),
  allow_root_actions: Flags.boolean({
    summary: 'Let actions run as root (input files are then copied, never hard-linked).',
    default: false,
    aliases: ['allow-root-actions'],
  }),
  chroot: Flags.boolean({
    summary: 'Run every action chrooted into its input root (bwrap runner; per action: platform chroot=true).',
    default: false,
  }),
  action_memory: Flags.string({ summary: 'Memory per action (e.g. 4G).', default: '4G', aliases: ['action-memory'] }),
  action_processes: Flags.integer({ summary: 'Processes per action at once.', default: 1024, min: 1, aliases: ['action-processes'] }),
  action_file_size: Flags.string({ summary: 'Largest file an action may write (e.g. 16G).', default: '16G', aliases: ['action-file-size'] }),
  action_output_size: Flags.string({ summary: 'Total bytes of an action\'s outputs (e.g. 16G).', default: '16G', aliases: ['action-output-size'] }),
};

/** Parses `uid:gid` (numbers) for --run_as. */
export function parseRunAs(text: string): { uid: number; gid: number } {
  const m = /^(\d+):(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`Invalid run_as ${JSON.stringify(text)}: use numeric uid:gid (e.g. 65534:65534)`);
  return { uid: Number(m[1]), gid: Number(m[2]) };
}

export function resolveSlots(slots: number | undefined): number {
  return slots ?? availableParallelism();
}

export function resolvePlatform(entries: readonly string[]): { name: string; value: string }[] {
  return parseKeyValues(entries, 'platform');
}

/** Resolves after SIGINT or SIGTERM. */
export function waitForShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

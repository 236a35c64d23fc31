/**
 * Starts `bzutil serve all` from the built binary for a benchmark run (fresh storage and work
 * directories, loopback ports picked by the kernel), and reads its memory from /proc so M1 can
 * report the peak resident set of the whole server (apiserver + scheduler + worker in one process).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCpuSeconds } from '../lib/cpu-time.js';
import { startListeningProcess, type ServeProcess } from '../lib/processes.js';

/** Resident-set figures of a process, in bytes. */
export interface MemoryUsage {
  /** VmRSS: resident now. */
  rssBytes: number;
  /** VmHWM: the peak resident set since the process started. */
  peakRssBytes: number;
}

/** Reads VmRSS and VmHWM of `pid` from /proc (Linux only); undefined when unavailable. */
export function readMemoryUsage(pid: number): MemoryUsage | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const rssBytes = kib('VmRSS');
  const peakRssBytes = kib('VmHWM');
  return rssBytes === undefined || peakRssBytes === undefined ? undefined : { rssBytes, peakRssBytes };
}

// readCpuSeconds moved to ../lib/cpu-time.ts (the PK suite reads it too); re-exported for the Bazel suite.
export { readCpuSeconds };

/** A running `bzutil serve all` child with its own temp storage. */
export interface ServeAll {
  pid: number;
  /** host:port of the apiserver (CAS, ByteStream, ActionCache, Capabilities). */
  apiserverAddress: string;
  /** host:port of the scheduler (Execution + storage APIs): Bazel's `--remote_executor`. */
  schedulerAddress: string;
  /** The tail of what it wrote to stderr. */
  logs(): string;
  memory(): MemoryUsage | undefined;
  /** CPU seconds the server process has used so far. */
  cpuSeconds(): number | undefined;
  /** SIGTERM (then SIGKILL after a grace period) and removal of its temp directories. */
  stop(): Promise<void>;
}

/** Options of {@link startServeAll}. */
export interface ServeAllOptions {
  /** bin/run.js of the built CLI. */
  binPath: string;
  /** Worker slots (`--slots`). */
  slots: number;
  /** `--log_level`. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Sees every chunk of the server's stderr (its log records), e.g. to collect its per-RPC debug lines. */
  onStderr?: (chunk: string) => void;
}

/**
 * Runs `node <binPath> serve all` on 127.0.0.1 port 0 with empty storage and work directories and
 * resolves once both servers listen. The process is tracked by bench/lib/processes.ts, so the runner
 * stops it even when a benchmark is interrupted.
 */
export async function startServeAll(opts: ServeAllOptions): Promise<ServeAll> {
  const root = mkdtempSync(join(tmpdir(), 'bzutil-bench-serve-'));
  const removeRoot = () => {
    // Action outputs may be read-only; make them writable before removing.
    spawnSync('chmod', ['-R', 'u+w', root]);
    rmSync(root, { recursive: true, force: true });
  };
  const args = [
    'serve',
    'all',
    '--apiserver_listen=127.0.0.1:0',
    '--scheduler_listen=127.0.0.1:0',
    `--storage_dir=${join(root, 'storage')}`,
    `--work_dir=${join(root, 'work')}`,
    `--slots=${opts.slots}`,
    `--log_level=${opts.logLevel ?? 'info'}`,
  ];
  let proc: ServeProcess;
  try {
    proc = await startListeningProcess(opts.binPath, args, ['apiserver', 'scheduler'], 60_000, opts.onStderr);
  } catch (err) {
    removeRoot();
    throw err;
  }
  return {
    pid: proc.pid,
    apiserverAddress: proc.addresses.apiserver!,
    schedulerAddress: proc.addresses.scheduler!,
    logs: () => proc.logs(),
    memory: () => readMemoryUsage(proc.pid),
    cpuSeconds: () => readCpuSeconds(proc.pid),
    stop: async () => {
      await proc.stop();
      removeRoot();
    },
  };
}

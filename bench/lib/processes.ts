/**
 * Every process the benchmark starts: the servers under test, the raw grpc-js baseline server and
 * the driver processes that act as clients. They are tracked in one registry so that the runner
 * stops each of them by its own pid at the end, on failure and on Ctrl-C, and nothing outlives it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { profileArgs } from './cpu-profile.js';
import { binPath, driverPath, repoRoot } from './paths.js';

const children = new Set<ChildProcess>();
/** Set once the runner stops everything (end of run, Ctrl-C): no new process may start after it. */
let stopping = false;
const STDERR_TAIL_CHARS = 20_000;

/** A server child process that reported where it listens. */
export interface ServeProcess {
  /** Addresses by service name, e.g. { apiserver: '127.0.0.1:41234', scheduler: '127.0.0.1:41235' }. */
  addresses: Record<string, string>;
  pid: number;
  /** Milliseconds from spawn until every expected service listened (includes index rebuilds). */
  startupMs: number;
  /** The last part of what the process wrote to stderr, for error messages. */
  logs(): string;
  stop(): Promise<void>;
}

/**
 * Spawns `node <script> <args>` and resolves once each name in `expect` printed
 * `<name> listening on <address>` on stdout. `onStderr` sees all of stderr (the returned `logs()`
 * keeps only its tail), e.g. to read every debug record of a window of time.
 */
export async function startListeningProcess(
  script: string,
  args: string[],
  expect: string[],
  timeoutMs = 300_000,
  onStderr?: (chunk: string) => void,
): Promise<ServeProcess> {
  const startedAt = performance.now();
  const child = spawnNode([script, ...args]);
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    const chunk = d.toString();
    onStderr?.(chunk);
    stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS);
  });
  const addresses: Record<string, string> = {};
  const describe = `${script.replace(repoRoot + '/', '')} ${args.join(' ')}`;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Failed to start ${describe}: no "listening" line within ${timeoutMs} ms.\nstderr: ${stderr}`)), timeoutMs);
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        for (const m of stdout.matchAll(/^(\w+) listening on (\S+)$/gm)) addresses[m[1]!] = m[2]!;
        if (expect.every((s) => addresses[s])) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`Failed to start ${describe}: it exited (${code ?? signal}).\nstderr: ${stderr}`));
      });
    });
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  // Keep draining stdout so that the child never blocks on a full pipe.
  child.stdout!.resume();
  return {
    addresses,
    pid: child.pid!,
    startupMs: performance.now() - startedAt,
    logs: () => stderr,
    stop: () => stopChild(child),
  };
}

/** Arguments of `bzutil serve all` on loopback ports with a filesystem CAS in `storageDir` and quiet logs. */
export function serveAllArgs(storageDir: string, workDir: string, slots = 2): string[] {
  return [
    'all',
    '--apiserver_listen=127.0.0.1:0',
    '--scheduler_listen=127.0.0.1:0',
    `--slots=${slots}`,
    `--storage_dir=${storageDir}`,
    `--work_dir=${workDir}`,
    '--max_size=64G',
    '--log_level=warn',
  ];
}

/** Timeout of one large transfer: generous (5 MiB/s), so that only a hang trips it. */
export function transferTimeoutMs(sizeBytes: number): number {
  return Math.max(60_000, (sizeBytes / (5 * 1024 * 1024)) * 1000);
}

/** `bzutil serve <args>` from the regular build. */
export function startServe(args: string[], expect: string[], timeoutMs?: number): Promise<ServeProcess> {
  // The HTTP port (/metrics) on a free port rather than the role's fixed default.
  return startListeningProcess(binPath, ['serve', ...args, '--http_listen=127.0.0.1:0'], expect, timeoutMs);
}

/**
 * Runs one driver job (`dist-bench/bench/driver.js <job> <params>`) in a fresh process and resolves
 * to the JSON it prints. A fresh process per job keeps clients independent of the runner's own heap
 * and timers, and is what "client in another process" means for the baselines.
 */
export async function runDriver<T>(job: string, params: unknown, timeoutMs: number): Promise<T> {
  const child = spawnNode([driverPath, job, JSON.stringify(params)]);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-STDERR_TAIL_CHARS)));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  if (timedOut) throw new Error(`Driver job ${job} did not finish within ${Math.round(timeoutMs / 1000)} s.\nstderr: ${stderr.trim()}`);
  if (code !== 0) {
    const why = stderr.trim().split('\n').slice(-20).join('\n');
    throw new Error(`Driver job ${job} failed (${code ?? signal}): ${why}`);
  }
  const lastLine = stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(lastLine) as T;
  } catch {
    throw new Error(`Driver job ${job} printed no JSON result: ${JSON.stringify(stdout.slice(-500))}`);
  }
}

/** Stops every process still running (SIGTERM, then SIGKILL after `graceMs`) and refuses new ones. */
export async function stopAllChildren(graceMs = 10_000): Promise<void> {
  stopping = true;
  await Promise.all([...children].map((c) => stopChild(c, graceMs)));
}

/** Synchronous last resort for `process.on('exit')`: SIGKILL whatever is left, by pid. */
export function killAllChildrenNow(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

let profileDir: string | undefined;

/** From now on every process started runs with `--cpu-prof`, its profile under `dir` (see cpu-profile.ts). */
export function profileChildrenInto(dir: string): void {
  profileDir = dir;
}

function spawnNode(args: string[]): ChildProcess {
  const kind = args[0] === binPath ? `serve-${args[2] ?? ''}` : `driver-${args[1] ?? ''}`;
  const nodeArgs = profileDir === undefined ? [] : profileArgs(profileDir, kind);
  return spawnTracked(process.execPath, [...nodeArgs, ...args]);
}

/** Spawns any program (e.g. redis-server) into the registry, so the runner stops it like the rest. */
export function spawnTracked(command: string, args: string[]): ChildProcess {
  if (stopping) throw new Error('The benchmark is stopping: no new process is started');
  const child = spawn(command, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  return child;
}

function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

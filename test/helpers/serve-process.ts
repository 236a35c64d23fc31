/**
 * Starts `bzutil serve ...` from the built binary as a child process for end-to-end tests, waits
 * until it reports where it listens, and stops it (by its own pid) afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const binPath = join(repoRoot, 'bin/run.js');

export interface ServeProcess {
  /** Addresses by service, e.g. { apiserver: '127.0.0.1:41234', scheduler: '127.0.0.1:41235' }. */
  addresses: Record<string, string>;
  child: ChildProcess;
  /** Everything the process wrote to stderr so far (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

/**
 * Runs `bzutil serve <args>` and resolves once every service in `expect` printed its
 * "<service> listening on <address>" line (a worker: "worker polling <scheduler>") on stdout. The
 * HTTP port is on a free loopback port unless `args` sets `--http_listen` (its address: `addresses.http`).
 */
export async function startServe(args: string[], expect: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ServeProcess> {
  // Every role opens an HTTP port (/metrics) at a fixed default; tests never bind fixed ports.
  const http = args.some((a) => a.startsWith('--http_listen')) ? [] : ['--http_listen=127.0.0.1:0'];
  const child = spawn(process.execPath, [binPath, 'serve', ...args, ...http], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (stderr.length > 1_000_000) stderr = stderr.slice(-500_000);
  });
  const addresses: Record<string, string> = {};
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve ${args.join(' ')} did not report ${expect.join(', ')} in time.\nstdout: ${stdout}\nstderr: ${stderr}`)), opts.timeoutMs ?? 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      // Servers print "<service> listening on <address>"; a worker prints "worker polling <scheduler> ...".
      for (const m of stdout.matchAll(/^(\w+) (?:listening on|polling) (\S+)/gm)) addresses[m[1]!] = m[2]!;
      if (expect.every((s) => addresses[s])) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`serve ${args.join(' ')} exited early (${code ?? signal}).\nstdout: ${stdout}\nstderr: ${stderr}`));
    });
  });
  return {
    addresses,
    child,
    logs: () => stderr,
    stop: () => stopChild(child),
  };
}

/** Sends SIGTERM to our own child, then SIGKILL if it has not exited within `graceMs`. */
export function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
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

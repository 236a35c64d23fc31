/**
 * Starts Debian's `redis-server` for a test on a free loopback port, in a temporary directory,
 * with persistence off, and stops it (by its own pid) afterwards. In CI a missing redis-server is a
 * failure, not a skip (`.ci/run` installs it). The benchmarks start theirs through it too
 * (bench/lib/redis.ts), spawned into their own process registry.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild } from './serve-process.js';

export interface RedisServer {
  /** `redis://127.0.0.1:PORT` */
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** True when `redis-server` is on PATH. Under CI its absence throws: the tier must not skip. */
export function hasRedisServer(): boolean {
  const found = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!found && process.env.CI) throw new Error('redis-server is not installed; CI must run the Redis tests (.ci/run installs it)');
  return found;
}

/** A TCP port that was free on `host` a moment ago (the kernel picks it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface StartRedisOptions {
  /** @default 127.0.0.1 */
  host?: string;
  timeoutMs?: number;
  /** Parent of its temporary directory. @default the system's */
  tmpDir?: string;
  /** Spawns the process with piped stdout and stderr (the benchmarks track theirs). @default child_process.spawn */
  spawn?: (command: string, args: string[]) => ChildProcess;
}

/** Starts redis-server on `host` and resolves once it accepts connections. */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  const host = opts.host ?? '127.0.0.1';
  const spawnRedis = opts.spawn ?? ((command: string, args: string[]) => spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const dir = mkdtempSync(join(opts.tmpDir ?? tmpdir(), 'bzutil-redis-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort(host);
    const child = spawnRedis('redis-server', ['--bind', host, '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no']);
    let out = '';
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), opts.timeoutMs ?? 15_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (/Ready to accept connections/.test(out)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (ready) {
      // Keep draining its log so that it never blocks on a full pipe.
      child.stdout!.resume();
      child.stderr!.resume();
      return {
        url: `redis://${host}:${port}`,
        port,
        child,
        stop: async () => {
          await stopChild(child, 5_000);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    await stopChild(child, 1_000);
    // Another process may have taken the port between freePort() and the bind: try again.
    if (attempt >= 2) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not start on ${host}:${port}: ${out.slice(-2000)}`);
    }
  }
}

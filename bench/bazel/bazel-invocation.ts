/**
 * Runs Debian's Bazel 4.2.3 for the benchmarks: one output base per configuration (so a local and a
 * remote build never share outputs or an in-memory cache), the flags that keep its logs small, and
 * the parsing of what it reports (the "N processes: ..." summary and its own elapsed time).
 */
import { spawn, spawnSync } from 'node:child_process';

/** Flags for every build: quiet logs and no convenience symlinks (several output bases share the workspace). */
export const COMMON_BUILD_FLAGS = ['--symlink_prefix=/', '--nosandbox_debug', '--color=no', '--curses=no', '--show_progress_rate_limit=60', '--noshow_loading_progress'];

/**
 * Flags of a `--remote_cache` build that only reads the cache (B2). `serve all` refuses clients'
 * ActionCache writes unless `--allow_ac_updates` is given (Capabilities say update_enabled false),
 * and Bazel 4.2.3 will not start a build that would upload its local results to such a cache.
 */
export const READ_ONLY_CACHE_FLAGS = ['--remote_upload_local_results=false'];

/** True when a `bazel` binary is on PATH. */
export function bazelOnPath(): boolean {
  return spawnSync('sh', ['-c', 'command -v bazel'], { encoding: 'utf8' }).status === 0;
}

/** The outcome of one `bazel` invocation. */
export interface BazelRun {
  args: string[];
  code: number;
  /** stdout + stderr, interleaved as they arrived. */
  output: string;
  /** Wall time of the client invocation, measured by us. */
  wallMs: number;
}

/** A Bazel server bound to one output base, used for one configuration of the benchmark. */
export class BazelOutputBase {
  private used = false;

  /**
   * @param workspaceDir where `bazel` runs.
   * @param outputBase this configuration's `--output_base`.
   * @param timeoutMs a hard limit per invocation; a hung build must not hang the whole bench.
   */
  constructor(
    readonly workspaceDir: string,
    readonly outputBase: string,
    private readonly timeoutMs = 1_200_000,
  ) {}

  /** Runs `bazel --output_base=<ob> <args>`; resolves with its exit code, output and wall time. */
  run(args: string[]): Promise<BazelRun> {
    this.used = true;
    const startup = [`--output_base=${this.outputBase}`, '--max_idle_secs=300'];
    return new Promise((resolve, reject) => {
      const startedAt = performance.now();
      const child = spawn('bazel', [...startup, ...args], { cwd: this.workspaceDir, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      const append = (d: Buffer) => {
        output += d.toString();
        // Keep the tail only: the summary lines we parse come last.
        if (output.length > 4_000_000) output = output.slice(-2_000_000);
      };
      child.stdout.on('data', append);
      child.stderr.on('data', append);
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`Failed to finish bazel ${args.join(' ')} within ${this.timeoutMs} ms:\n${output.slice(-3000)}`));
      }, this.timeoutMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`Failed to start bazel: ${err.message}`, { cause: err }));
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ args, code: code ?? -1, output, wallMs: performance.now() - startedAt });
      });
    });
  }

  /** Runs and throws (with the output's tail) unless Bazel exits 0. */
  async runOk(args: string[], what: string): Promise<BazelRun> {
    const result = await this.run(args);
    if (result.code !== 0) throw new BazelFailedError(what, result);
    return result;
  }

  /** Stops this output base's Bazel server, if one was started; never throws. */
  async shutdown(): Promise<void> {
    if (!this.used) return;
    await this.run(['shutdown']).catch(() => undefined);
  }
}

/** A Bazel invocation that exited non-zero: the benchmark row it feeds is invalid. */
export class BazelFailedError extends Error {
  constructor(
    readonly what: string,
    readonly result: BazelRun,
  ) {
    super(`Failed to ${what}: bazel ${result.args.join(' ')} exited ${result.code}:\n${result.output.slice(-4000)}`);
    this.name = 'BazelFailedError';
  }
}

/** Bazel's "INFO: N processes: 3 remote cache hit, 2 internal, 5 remote." as counts by kind (plus `total`). */
export function parseProcessSummary(output: string): Record<string, number> | undefined {
  const last = [...output.matchAll(/INFO: (\d+) process(?:es)?(?:: (.*))?\./g)].at(-1);
  if (!last) return undefined;
  const counts: Record<string, number> = { total: Number(last[1]) };
  for (const part of (last[2] ?? '').split(',')) {
    const m = /^\s*(\d+) (.+?)\s*$/.exec(part);
    if (m) counts[m[2]!] = Number(m[1]);
  }
  return counts;
}

/** Bazel's own "INFO: Elapsed time: 12.345s" in milliseconds. */
export function parseElapsedMs(output: string): number | undefined {
  const last = [...output.matchAll(/INFO: Elapsed time: ([\d.]+)s/g)].at(-1);
  return last ? Math.round(Number(last[1]) * 1000) : undefined;
}

/**
 * Why a warm build is not a pure cache replay, or undefined when every process was a cache hit
 * ("internal" ones are Bazel's own symlink/manifest steps and run in every build).
 */
export function notAllCacheHits(summary: Record<string, number> | undefined): string | undefined {
  if (!summary) return 'Bazel printed no process summary';
  const executed = Object.entries(summary).filter(([kind, n]) => kind !== 'total' && kind !== 'internal' && !kind.endsWith('cache hit') && n > 0);
  if (executed.length > 0) return `not every process was a cache hit: ${executed.map(([k, n]) => `${n} ${k}`).join(', ')}`;
  const hits = Object.entries(summary).filter(([kind]) => kind.endsWith('cache hit')).reduce((sum, [, n]) => sum + n, 0);
  if (hits === 0) return 'no process was a cache hit';
  return undefined;
}

/**
 * The Bazel benchmarks of issue 4: B1 (cold remote-execution build vs a local sandboxed build), B2
 * (warm build after `bazel clean` from bzutil's cache vs Bazel's own `--disk_cache`, with all outputs
 * downloaded and with `--remote_download_minimal`) and M1 (peak RSS of `serve all` during B1).
 *
 * Machines here are shared and noisy, so every figure is a ratio against a baseline measured in the
 * same run (the two sides alternate within each repetition) and the median of the repetitions. A
 * row whose builds failed, or whose warm builds were not pure cache replays, is reported as invalid
 * (value NaN, `extra.invalid` says why) instead of as a misleading number. See README.md here.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import {
  BazelFailedError,
  BazelOutputBase,
  bazelOnPath,
  COMMON_BUILD_FLAGS,
  notAllCacheHits,
  parseElapsedMs,
  parseProcessSummary,
  READ_ONLY_CACHE_FLAGS,
  type BazelRun,
} from './bazel-invocation.js';
import { profileBreakdown, serverPhaseBreakdown } from './phase-breakdown.js';
import { FULL_SHAPE, generateWorkspace, QUICK_SHAPE, type GeneratedWorkspace } from './generate-workspace.js';
import { startServeAll, type ServeAll } from './serve-all-process.js';

/** One line of the benchmark report (the runner in bench/run.ts uses a structurally identical type). */
export interface BenchRow {
  id: string;
  what: string;
  /** The measured figure (NaN when the row is invalid). */
  value: number;
  unit: string;
  /** The same figure for the baseline, measured in the same run. */
  baseline: number;
  /** value / baseline. */
  ratio: number;
  /** The goal, e.g. "<= 1.25 x". */
  target: string;
  /** Whether the ratio meets the target; null when there is no target or the row is invalid. */
  met: boolean | null;
  extra?: Record<string, unknown>;
}

/** What the runner passes in. */
export interface BazelBenchContext {
  /** Smaller workspace (~30 C/C++ targets); the runner also passes repetitions = 1. */
  quick: boolean;
  /** Repetitions of every measured build; the median is reported. */
  repetitions: number;
  log: (msg: string) => void;
  /** bin/run.js of the built CLI. */
  binPath: string;
}

/** One measured build. */
interface Sample {
  wallMs: number;
  bazelElapsedMs: number | undefined;
  processes: Record<string, number> | undefined;
  /** Where the time went: Bazel's profile by category, and for remote builds the server's view. */
  breakdown: Record<string, unknown>;
}

/** The samples of one configuration, or why its figure cannot be trusted. */
interface Series {
  samples: Sample[];
  invalid?: string;
}

/** Median of a non-empty list (mean of the two middle values for an even count). */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;
const MiB = 1024 * 1024;

/**
 * Builds a ratio row from two series (seconds). Invalid when either side is; `met` compares the
 * median ratio with `maxRatio`.
 */
export function ratioRow(
  id: string,
  what: string,
  ours: Series,
  baseline: Series,
  maxRatio: number,
  extra: Record<string, unknown>,
): BenchRow {
  const invalid = [ours.invalid && `ours: ${ours.invalid}`, baseline.invalid && `baseline: ${baseline.invalid}`].filter(Boolean).join('; ');
  const seconds = (s: Series) => s.samples.map((x) => x.wallMs / 1000);
  const summary = (s: Series) => ({
    wallSeconds: seconds(s).map((x) => round(x, 2)),
    bazelElapsedSeconds: s.samples.map((x) => (x.bazelElapsedMs === undefined ? null : x.bazelElapsedMs / 1000)),
    processes: s.samples.at(-1)?.processes ?? null,
    breakdownOfLastRun: s.samples.at(-1)?.breakdown ?? null,
  });
  const value = invalid ? NaN : median(seconds(ours));
  const base = invalid ? NaN : median(seconds(baseline));
  const ratio = invalid ? NaN : value / base;
  return {
    id,
    what,
    value: round(value, 2),
    unit: 's',
    baseline: round(base, 2),
    ratio: round(ratio, 3),
    target: `<= ${maxRatio} x`,
    met: invalid ? null : ratio <= maxRatio,
    extra: { ...extra, ours: summary(ours), baselineRuns: summary(baseline), ...(invalid ? { invalid } : {}) },
  };
}

/** --jobs of the second B2 pair (both sides): enough cache lookups in flight to hide their round trips. */
const WARM_JOBS = 8;

/** Process kinds that mean an action ran on this machine rather than remotely. */
const LOCAL_KINDS = ['linux-sandbox', 'processwrapper-sandbox', 'local', 'sandboxed', 'worker'];

/**
 * Runs B1, B2 (all outputs and minimal) and M1 on a generated workspace and returns their rows.
 * Never throws for a failed build: the affected rows come back invalid, with the reason.
 */
export async function runBazelBenchmarks(ctx: BazelBenchContext): Promise<BenchRow[]> {
  const ids = ['B1', 'B2', 'B2-minimal', 'B2-jobs8', 'B2-minimal-jobs8', 'M1-B1'] as const;
  if (!bazelOnPath()) {
    const reason = 'bazel is not installed (apt-get install -y bazel-bootstrap)';
    ctx.log(`Bazel benchmarks skipped: ${reason}`);
    return ids.map((id) => invalidRow(id, reason));
  }
  const repetitions = Math.max(1, Math.floor(ctx.repetitions));
  const parallelism = Math.max(2, availableParallelism());
  const binPath = resolve(ctx.binPath);
  const fixtureDir = join(dirname(binPath), '..', 'test', 'fixtures', 'bazel-workspace');
  const root = mkdtempSync(join(tmpdir(), 'bzutil-bench-bazel-'));
  const shape = ctx.quick ? QUICK_SHAPE : FULL_SHAPE;
  const startedAt = performance.now();
  let workspace: GeneratedWorkspace;
  try {
    workspace = generateWorkspace(join(root, 'ws'), fixtureDir, shape);
  } catch (err) {
    rmSync(root, { recursive: true, force: true });
    const reason = `the workspace could not be generated: ${(err as Error).message}`;
    ctx.log(`Bazel bench: ${reason}`);
    return ids.map((id) => invalidRow(id, reason));
  }
  ctx.log(
    `Bazel bench: generated ${workspace.ccTargets} C/C++ targets (${workspace.ccLibraries} libraries, ${workspace.ccBinaries} binaries, ` +
      `${workspace.ccTests} tests) and ${workspace.genrules} genrules in ${workspace.dir}; ${repetitions} repetition(s), --jobs=${parallelism}, --slots=${parallelism}`,
  );

  const jobs = `--jobs=${parallelism}`;
  const local = new BazelOutputBase(workspace.dir, join(root, 'ob-local'));
  const remote = new BazelOutputBase(workspace.dir, join(root, 'ob-remote'));
  const diskCacheDir = join(root, 'disk-cache');
  let server: ServeAll | undefined;
  const common = {
    workspace: describeWorkspace(workspace),
    repetitions,
    jobs: parallelism,
    slots: parallelism,
  };

  try {
    // --- B1 and M1: cold builds, local sandboxed vs remote execution on a fresh, empty server. ---
    const b1Local: Series = { samples: [] };
    const b1Remote: Series = { samples: [] };
    let idleRssBytes = NaN;
    let peakRssBytes = NaN;
    const serverCpuSeconds: number[] = [];
    for (let rep = 0; rep < repetitions; rep++) {
      await measure(ctx, b1Local, `B1 local #${rep + 1}`, local, ['build', ...COMMON_BUILD_FLAGS, jobs], (s) => {
        if (!s) return 'Bazel printed no process summary';
        return localKinds(s) > 0 ? undefined : `no process ran locally: ${JSON.stringify(s)}`;
      });

      await server?.stop();
      server = undefined;
      try {
        server = await startServeAll({ binPath, slots: parallelism });
      } catch (err) {
        b1Remote.invalid ??= (err as Error).message;
        break;
      }
      const mem = server.memory();
      if (mem && Number.isNaN(idleRssBytes)) idleRssBytes = mem.rssBytes;
      const remoteFlags = ['build', ...COMMON_BUILD_FLAGS, jobs, `--remote_executor=grpc://${server.schedulerAddress}`, '--remote_local_fallback=false'];
      const cpuBefore = server.cpuSeconds();
      const sample = await measure(ctx, b1Remote, `B1 remote #${rep + 1}`, remote, remoteFlags, (s) => {
        if (!s) return 'Bazel printed no process summary';
        if ((s.remote ?? 0) === 0) return `no process ran remotely: ${JSON.stringify(s)}`;
        if (localKinds(s) > 0) return `some processes ran locally: ${JSON.stringify(s)}`;
        return undefined;
      });
      const after = server.memory();
      if (after) peakRssBytes = Number.isNaN(peakRssBytes) ? after.peakRssBytes : Math.max(peakRssBytes, after.peakRssBytes);
      const cpuAfter = server.cpuSeconds();
      if (sample) {
        // The server is fresh each repetition, so its operations are exactly this build's actions.
        sample.breakdown.server = await serverPhaseBreakdown(binPath, server.schedulerAddress);
        if (cpuBefore !== undefined && cpuAfter !== undefined) {
          sample.breakdown.serverCpuSeconds = round(cpuAfter - cpuBefore, 2);
          serverCpuSeconds.push(round(cpuAfter - cpuBefore, 2));
        }
      }
    }
    const rows: BenchRow[] = [];
    rows.push(ratioRow('B1', 'cold --remote_executor build (serve all, empty storage) vs local sandboxed build', b1Remote, b1Local, 1.25, common));

    // --- B2: warm builds after bazel clean: our cache vs Bazel's --disk_cache. ---
    // The server of the last B1 repetition holds every blob and action result of the build. The disk
    // cache is filled by one more cold local build in B1's local output base (whose Bazel server is
    // already up: that saves a start-up, and --disk_cache does not invalidate its analysis cache).
    let diskPopulated: string | undefined;
    try {
      await local.runOk(['clean'], 'clean before populating the disk cache');
      await local.runOk(['build', ...COMMON_BUILD_FLAGS, jobs, `--disk_cache=${diskCacheDir}`, '//...'], 'populate the disk cache');
      ctx.log('B2: disk cache populated');
    } catch (err) {
      diskPopulated = (err as Error).message;
    }
    // B2 with --jobs = the cores, then again with --jobs=8 on both sides: a cache hit waits on round
    // trips, not on a core, so more jobs hide Bazel's per-call latency (bench/bazel/profile-b2.ts),
    // while the disk cache, bound by the cores, gains nothing from them.
    const warmConfigs = [
      { minimal: false, jobs, suffix: '' },
      { minimal: true, jobs, suffix: '' },
      { minimal: false, jobs: `--jobs=${WARM_JOBS}`, suffix: `-jobs${WARM_JOBS}` },
      { minimal: true, jobs: `--jobs=${WARM_JOBS}`, suffix: `-jobs${WARM_JOBS}` },
    ];
    for (const { minimal, jobs: warmJobs, suffix } of warmConfigs) {
      const extraFlags = minimal ? ['--remote_download_minimal'] : [];
      const ours: Series = { samples: [] };
      const base: Series = { samples: [], ...(diskPopulated ? { invalid: diskPopulated } : {}) };
      if (!server || b1Remote.invalid) ours.invalid = `the remote cache was not populated by B1: ${b1Remote.invalid ?? 'no server'}`;
      const label = (minimal ? 'B2-minimal' : 'B2') + suffix;
      for (let rep = 0; rep < repetitions && !ours.invalid && !base.invalid; rep++) {
        await measure(ctx, base, `${label} --disk_cache #${rep + 1}`, local, ['build', ...COMMON_BUILD_FLAGS, warmJobs, `--disk_cache=${diskCacheDir}`, ...extraFlags], notAllCacheHits);
        await measure(ctx, ours, `${label} bzutil cache #${rep + 1}`, remote, ['build', ...COMMON_BUILD_FLAGS, warmJobs, `--remote_cache=grpc://${server!.apiserverAddress}`, ...READ_ONLY_CACHE_FLAGS, ...extraFlags], notAllCacheHits);
      }
      rows.push(
        ratioRow(
          label,
          `warm build after bazel clean: --remote_cache (serve all's apiserver) vs --disk_cache, ${minimal ? '--remote_download_minimal' : 'all outputs downloaded'}, ${warmJobs} both`,
          ours,
          base,
          minimal ? 1.0 : 1.1,
          { ...common, jobs: Number(warmJobs.slice('--jobs='.length)) },
        ),
      );
    }

    rows.push({
      id: 'M1-B1',
      what: 'peak RSS (VmHWM) of the serve all process during B1; baseline = its RSS when idle after start',
      value: round(peakRssBytes / MiB, 1),
      unit: 'MiB',
      baseline: round(idleRssBytes / MiB, 1),
      ratio: round(peakRssBytes / idleRssBytes, 2),
      target: 'reported',
      met: null,
      extra: { ...common, serverCpuSecondsDuringB1: serverCpuSeconds, ...(Number.isNaN(peakRssBytes) ? { invalid: b1Remote.invalid ?? 'could not read /proc/<pid>/status' } : {}) },
    });
    ctx.log(`Bazel bench: done in ${round((performance.now() - startedAt) / 1000, 1)} s`);
    return rows;
  } catch (err) {
    const reason = `the benchmark failed: ${(err as Error).message}`;
    ctx.log(`Bazel bench: ${reason}`);
    return ids.map((id) => invalidRow(id, reason));
  } finally {
    for (const ob of [local, remote]) await ob.shutdown();
    await server?.stop();
    spawnSync('chmod', ['-R', 'u+w', root]);
    rmSync(root, { recursive: true, force: true });
  }
}

function localKinds(summary: Record<string, number>): number {
  return LOCAL_KINDS.reduce((sum, kind) => sum + (summary[kind] ?? 0), 0);
}

function describeWorkspace(ws: GeneratedWorkspace) {
  return { ccTargets: ws.ccTargets, ccLibraries: ws.ccLibraries, ccBinaries: ws.ccBinaries, ccTests: ws.ccTests, genrules: ws.genrules };
}

function invalidRow(id: string, reason: string): BenchRow {
  return { id, what: id, value: NaN, unit: '', baseline: NaN, ratio: NaN, target: '', met: null, extra: { invalid: reason } };
}

/**
 * One measured build of `//...`: `bazel clean` (so nothing is left in the output tree or Bazel's
 * action cache), an untimed `--nobuild` with the same flags (Bazel server start-up, loading and
 * analysis are excluded equally from both sides), then the timed build. Adds the sample to the series,
 * or marks the series invalid when Bazel failed or `check` rejects the process summary.
 */
async function measure(
  ctx: BazelBenchContext,
  series: Series,
  what: string,
  ob: BazelOutputBase,
  buildArgs: string[],
  check: (summary: Record<string, number> | undefined) => string | undefined,
): Promise<Sample | undefined> {
  if (series.invalid) return undefined;
  let run: BazelRun;
  const prepStartedAt = performance.now();
  try {
    await ob.runOk(['clean'], `clean before ${what}`);
    await ob.runOk([...buildArgs, '--nobuild', '//...'], `analyse before ${what}`);
  } catch (err) {
    return fail(err);
  }
  const prepMs = performance.now() - prepStartedAt;
  try {
    run = await ob.runOk([...buildArgs, '//...'], what);
  } catch (err) {
    return fail(err);
  }
  const processes = parseProcessSummary(run.output);
  const problem = check(processes);
  const sample: Sample = { wallMs: run.wallMs, bazelElapsedMs: parseElapsedMs(run.output), processes, breakdown: { bazelProfile: profileBreakdown(ob.outputBase) } };
  series.samples.push(sample);
  ctx.log(
    `${what}: ${round(run.wallMs / 1000, 2)} s wall (Bazel: ${sample.bazelElapsedMs ?? '?'} ms; clean + analysis before it: ${round(prepMs / 1000, 1)} s) ` +
      `${JSON.stringify(processes ?? {})}${problem ? ` INVALID: ${problem}` : ''}`,
  );
  if (problem) series.invalid = `${what}: ${problem}`;
  return sample;

  function fail(err: unknown): undefined {
    series.invalid = err instanceof BazelFailedError ? `${err.what} failed (exit ${err.result.code})` : (err as Error).message;
    ctx.log(`${what}: ${(err as Error).message}`);
    return undefined;
  }
}

/**
 * The benchmark runner behind `npm run bench`: measures the baselines, then each suite, prints the
 * table on stdout and writes `bench/results/latest.json`. Servers and clients run as separate
 * processes on 127.0.0.1; every one of them is stopped by pid at the end, on failure and on Ctrl-C,
 * and the scratch directory is removed.
 *
 * Usage: `npm run bench -- [--quick] [--no-bazel] [--save] [--only=C1,E1,...]`
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { machineInfo } from './lib/machine.js';
import { benchDistDir, binPath, repoRoot, resultsDir } from './lib/paths.js';
import { formatProfileSummaries, summarizeProfiles } from './lib/cpu-profile.js';
import { killAllChildrenNow, profileChildrenInto, startServe, stopAllChildren } from './lib/processes.js';
import { failedRow } from './lib/rows.js';
import { GiB, MiB } from './lib/stats.js';
import { formatTable } from './lib/table.js';
import type { BenchContext, BenchMode, BenchSettings, BenchmarkRow } from './lib/types.js';
import { runBaselines } from './suites/baselines.js';
 import { runExecutionBenchmark, runRunnerComparison } from './suites/execution.js';
import { runQueueScaleBenchmark } from './suites/queue-scale.js';
import { runFindMissingBenchmark } from './suites/find-missing.js';
import { runShardingBenchmark } from './suites/sharding.js';
import { runPackedBenchmark } from './suites/packed.js';
import { runStorageBenchmarks } from './suites/storage.js';
import { runCompressionBenchmarks } from './suites/compression.js';
import { runTlsBenchmarks } from './suites/tls.js';
import { runProcessesBenchmarks } from './suites/processes.js';
import { runSpliceBenchmarks } from './suites/splice.js';
// Type only (erased at run time): the Bazel suite itself is loaded on demand, if it is there.
import type { BenchRow as BazelRow } from './bazel/index.js';

const SETTINGS: Record<BenchMode, BenchSettings> = {
  full: {
    mode: 'full',
    repetitions: 3,
    streamBytes: 1 * GiB,
    sha256Bytes: 1 * GiB,
    memoryProbeBytes: [256 * MiB, 1 * GiB],
    smallBlobCount: 100_000,
    unaryCalls: 30_000,
    findMissingStoreBlobs: 1_000_000,
    findMissingQueries: 100,
    executeSequential: 200,
    executeThroughput: 500,
  },
  quick: {
    mode: 'quick',
    repetitions: 2,
    streamBytes: 128 * MiB,
    sha256Bytes: 1 * GiB,
    memoryProbeBytes: [32 * MiB, 128 * MiB],
    smallBlobCount: 3_000,
    unaryCalls: 5_000,
    findMissingStoreBlobs: 50_000,
    findMissingQueries: 30,
    executeSequential: 40,
    executeThroughput: 80,
  },
};

interface Options {
  mode: BenchMode;
  bazel: boolean;
  save: boolean;
  /** Benchmark id prefixes to run (e.g. C1, E1, B); empty: all. Baselines always run. */
  only: string[];
  /** --profile=DIR: every process writes a CPU profile under DIR; top frames printed at the end. */
  profileDir?: string;
}

const PROFILE_TOP_FRAMES = 25;

const USAGE = `Usage: npm run bench -- [--quick] [--no-bazel] [--save] [--only=C1,C5,E1,Q1,S1,PK,CZ,H1,TLS,SP,B] [--profile=DIR]
  --quick     smaller sizes and fewer repetitions (finishes in under 3 minutes)
  --no-bazel  skip the Bazel builds (B1/B2) in bench/bazel
  --save      also write bench/results/<mode>-<date>.json
  --only      run only the suites whose ids start with these prefixes (baselines always run)
  --profile   write a CPU profile of every server and client process under DIR and print their top frames`;

function parseOptions(argv: readonly string[]): Options {
  const options: Options = { mode: 'full', bazel: true, save: false, only: [] };
  for (const arg of argv) {
    if (arg === '--quick') options.mode = 'quick';
    else if (arg === '--full') options.mode = 'full';
    else if (arg === '--no-bazel') options.bazel = false;
    else if (arg === '--save') options.save = true;
    else if (arg.startsWith('--profile=')) options.profileDir = resolve(arg.slice('--profile='.length));
    else if (arg.startsWith('--only=')) options.only = arg.slice('--only='.length).split(',').map((s) => s.trim().toUpperCase()).filter(Boolean);
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else {
      process.stderr.write(`Unknown argument ${JSON.stringify(arg)}\n${USAGE}\n`);
      process.exit(2);
    }
  }
  return options;
}

interface Suite {
  name: string;
  /** Row id prefixes this suite produces, matched against --only. */
  ids: string[];
  run(ctx: BenchContext): Promise<BenchmarkRow[]>;
}

const SUITES: Suite[] = [
  { name: 'storage (C1, C2, M1, C3)', ids: ['C1', 'C2', 'C3', 'M1'], run: runStorageBenchmarks },
  { name: 'FindMissingBlobs (C5)', ids: ['C5'], run: runFindMissingBenchmark },
  { name: 'sharded CAS (S1)', ids: ['S1'], run: runShardingBenchmark },
  { name: 'small blobs, one file each vs pack files (PK)', ids: ['PK'], run: runPackedBenchmark },
  { name: 'execution (E1)', ids: ['E1'], run: runExecutionBenchmark },
  { name: 'queue scale (Q1)', ids: ['Q1'], run: runQueueScaleBenchmark },
  { name: 'compression and hashing (CZ, H1)', ids: ['CZ', 'H1'], run: runCompressionBenchmarks },
  { name: 'split/splice (SP)', ids: ['SP'], run: runSpliceBenchmarks },
  { name: 'execution by runner (E1-local, E1-bwrap)', ids: ['E1'], run: runRunnerComparison },
  { name: 'TLS beside plaintext (C1-*-tls, E1-tls-*)', ids: ['TLS'], run: runTlsBenchmarks },
  { name: 'apiserver processes (C1-procs*)', ids: ['PROCS'], run: runProcessesBenchmarks },
];

/**
 * The Bazel suite of bench/bazel (B1, B2 and M1 during B1), if it is there. Its
 * `runBazelBenchmarks(ctx)` gets this runner's context plus the fields it asks for (`quick`,
 * `repetitions`: 1 in quick mode, Bazel builds being slow, and `binPath`); its rows join the table.
 */
async function bazelSuite(log: (m: string) => void): Promise<Suite | undefined> {
  const modulePath = join(benchDistDir, 'bazel/index.js');
  if (!existsSync(modulePath)) {
    log('bench/bazel is not there: no Bazel benchmarks (B1, B2) in this run');
    return undefined;
  }
  type RunBazel = (ctx: BenchContext & { quick: boolean; repetitions: number; binPath: string }) => Promise<BazelRow[]>;
  const mod = (await import(pathToFileURL(modulePath).href)) as { runBazelBenchmarks?: RunBazel };
  const runBazel = mod.runBazelBenchmarks;
  if (typeof runBazel !== 'function') throw new Error('bench/bazel/index.ts does not export runBazelBenchmarks(ctx)');
  return {
    name: 'Bazel (B1, B2)',
    ids: ['B', 'M1-B1'],
    run: async (ctx) => {
      const quick = ctx.settings.mode === 'quick';
      const rows = await runBazel({ ...ctx, quick, repetitions: quick ? 1 : ctx.settings.repetitions, binPath });
      return rows.map(fromBazelRow);
    },
  };
}

function fromBazelRow(r: BazelRow): BenchmarkRow {
  const finite = (n: number | null) => (n === null || !Number.isFinite(n) ? null : n);
  const value = finite(r.value);
  const out: BenchmarkRow = { id: r.id, what: r.what, value, unit: r.unit, baseline: finite(r.baseline), ratio: finite(r.ratio), target: r.target, met: r.met };
  if (r.extra) out.details = r.extra;
  if (value === null) out.error = typeof r.extra?.invalid === 'string' ? r.extra.invalid : 'no valid measurement';
  return out;
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  const settings = SETTINGS[options.mode];
  const log = (message: string) => process.stderr.write(`[bench ${elapsed()}] ${message}\n`);
  const startedAt = performance.now();
  const elapsed = () => `${((performance.now() - startedAt) / 1000).toFixed(0).padStart(4)}s`;
  const machine = machineInfo(options.mode);
  const tmpDir = await mkdtemp(join(tmpdir(), 'bzutil-bench-'));

  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping every process started by the benchmark and removing ${tmpDir}`);
    void stopAllChildren(2_000)
      .then(() => rm(tmpDir, { recursive: true, force: true }))
      .finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', killAllChildrenNow);

  if (options.profileDir) profileChildrenInto(options.profileDir);
  const baselines = new Map<string, number>();
  const ctx: BenchContext = {
    settings,
    repoRoot,
    tmpDir,
    log,
    startServe: (args, expect) => startServe(args, expect),
    baselines,
  };
  const rows: BenchmarkRow[] = [];
  try {
    log(`mode ${options.mode}: ${machine.cpuModel}, ${machine.cores} cores, load ${machine.loadAverageAtStart.join(' ')}; scratch ${tmpDir}`);
    log('measuring baselines');
    for (const r of await runBaselines(ctx)) {
      rows.push(r);
      if (r.value !== null) baselines.set(r.id, r.value);
    }
    const suites = [...SUITES];
    if (options.bazel) {
      try {
        const bazel = await bazelSuite(log);
        if (bazel) suites.push(bazel);
      } catch (err) {
        rows.push(failedRow('B', 'Bazel benchmarks (bench/bazel)', '-', 'reported', err));
      }
    }
    for (const suite of suites) {
      if (options.only.length && !suite.ids.some((id) => options.only.some((o) => id.startsWith(o) || o.startsWith(id)))) continue;
      log(`running ${suite.name}`);
      try {
        rows.push(...(await suite.run(ctx)));
      } catch (err) {
        log(`${suite.name} FAILED: ${err instanceof Error ? err.message : String(err)}`);
        rows.push(failedRow(suite.ids.join('/'), suite.name, '-', 'reported', err));
      }
    }
  } finally {
    await stopAllChildren();
    log(`removing ${tmpDir}`);
    await rm(tmpDir, { recursive: true, force: true });
  }

  const durationSeconds = Math.round((performance.now() - startedAt) / 1000);
  const report = { machine, durationSeconds, benchmarks: rows };
  await mkdir(resultsDir, { recursive: true });
  const json = `${JSON.stringify(report, null, 2)}\n`;
  await writeFile(join(resultsDir, 'latest.json'), json);
  if (options.save) await writeFile(join(resultsDir, `${options.mode}-${machine.date.replace(/[:.]/g, '-')}.json`), json);
  process.stdout.write(`${formatTable(rows)}\n`);
  if (options.profileDir) {
    const report = formatProfileSummaries(await summarizeProfiles(options.profileDir, PROFILE_TOP_FRAMES, repoRoot));
    await writeFile(join(options.profileDir, 'summary.txt'), report);
    process.stdout.write(`\nCPU profiles (top ${PROFILE_TOP_FRAMES} frames by self time; ${join(options.profileDir, 'summary.txt')}):\n${report}`);
  }
  log(`done in ${durationSeconds} s; results in bench/results/latest.json`);
  return rows.some((r) => r.error) ? 1 : 0;
}

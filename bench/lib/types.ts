/**
 * The shapes every benchmark suite shares: the result row (one line of the table and one entry of
 * `bench/results/latest.json`) and the context the runner hands to each suite, including the Bazel
 * suite in `bench/bazel/` (which exports `runBazelBenchmarks(ctx: BenchContext): Promise<BenchmarkRow[]>`).
 */
import type { ServeProcess } from './processes.js';

export type BenchMode = 'quick' | 'full';

/** One measured figure, compared with a baseline measured in the same run. */
export interface BenchmarkRow {
  /** Stable id, e.g. `C1-16k`, `E1-p50`, `BASE-up-1m`. */
  id: string;
  /** One line saying what was measured, with the sizes and counts used in this run. */
  what: string;
  /** Median over the repetitions; null when the benchmark failed (see `error`). */
  value: number | null;
  unit: string;
  /** The same-run baseline in the same unit as `value`; null for baselines and pure reports. */
  baseline: number | null;
  /** value / baseline; null without a baseline. */
  ratio: number | null;
  /** Human-readable target, e.g. `>= 0.9 x raw stream`, `p50 < 10 ms`, `reported`. */
  target: string;
  /** Whether the target is met; null when the row is only reported. */
  met: boolean | null;
  /** Per-repetition values and side figures, for whoever digs into a number. */
  details?: Record<string, unknown>;
  /** Why the benchmark produced no value. */
  error?: string;
}

/** Sizes and counts of one run; `quick` shrinks them so that the whole run stays under 3 minutes. */
export interface BenchSettings {
  mode: BenchMode;
  /** Repetitions per figure; the row reports their median. */
  repetitions: number;
  /** Blob size of C1/C2 and of the raw byte-stream baselines. */
  streamBytes: number;
  /** Bytes hashed by the SHA-256 baseline. */
  sha256Bytes: number;
  /** M1's two blob sizes (a quarter and the full size), each moved through a fresh server. */
  memoryProbeBytes: readonly [small: number, large: number];
  /** Small blobs per C3 repetition. */
  smallBlobCount: number;
  /** Unary calls per repetition of the no-op rate baseline. */
  unaryCalls: number;
  /** Blobs in the CAS queried by C5. */
  findMissingStoreBlobs: number;
  /** FindMissingBlobs requests (10k digests each) timed by C5. */
  findMissingQueries: number;
  /** Sequential Execute calls timed for the E1 latency. */
  executeSequential: number;
  /** Actions executed for the E1 throughput. */
  executeThroughput: number;
}

/** What a suite gets from the runner. Servers started through it are stopped by the runner. */
export interface BenchContext {
  settings: BenchSettings;
  /** The repository root (where `bin/run.js` lives). */
  repoRoot: string;
  /** A scratch directory removed at the end of the run. */
  tmpDir: string;
  /** Progress on stderr. */
  log(message: string): void;
  /** Starts `bzutil serve <args>` as a child process; resolves once `expect` services listen. */
  startServe(args: string[], expect: string[]): Promise<ServeProcess>;
  /** Baseline figures measured earlier in this run, by row id (e.g. `BASE-unary-rate`). */
  baselines: ReadonlyMap<string, number>;
}

/**
 * E1: the no-op action round trip through a fresh `serve all` with 2 worker slots (its default
 * runner: bwrap when installed): sequential latency with an idle worker, then throughput with enough
 * actions in flight to keep both slots busy. E1-local / E1-bwrap: the same sequential latency with the
 * worker as its own `serve worker --runner=<kind>` process beside `serve all --slots=0`, so the two
 * runners are compared in one topology (the sandbox may cost at most 5 ms p50).
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { NoopActionsResult } from '../jobs/execution-jobs.js';
import { runDriver, serveAllArgs } from '../lib/processes.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { percentile } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';
import { BASELINE } from './baselines.js';

const SLOTS = 2;
const IN_FLIGHT = 16;
const P50_LIMIT_MS = 10;
const MIN_ACTIONS_PER_S = 200;
const SANDBOX_P50_BUDGET_MS = 5;

/** p50 of sequential no-op actions on a `serve worker --runner=<runner>` beside `serve all --slots=0`. */
async function runnerP50s(ctx: BenchContext, runner: 'local' | 'bwrap'): Promise<number[]> {
  const { settings } = ctx;
  const server = await ctx.startServe(serveAllArgs(join(ctx.tmpDir, `e1-${runner}-storage`), join(ctx.tmpDir, `e1-${runner}-unused`), 0), ['apiserver', 'scheduler']);
  const p50s: number[] = [];
  try {
    const worker = await ctx.startServe(
      [
        'worker',
        `--scheduler=${server.addresses.scheduler}`,
        `--cas=${server.addresses.scheduler}`,
        `--slots=${SLOTS}`,
        `--runner=${runner}`,
        `--work_dir=${join(ctx.tmpDir, `e1-${runner}-work`)}`,
        '--log_level=warn',
      ],
      // A worker listens on nothing: it is ready once it prints its "worker polling" line.
      [],
    );
    try {
      for (let rep = 0; rep < settings.repetitions; rep++) {
        ctx.log(`E1-${runner}: ${settings.executeSequential} sequential no-op actions, repetition ${rep + 1}/${settings.repetitions}`);
        const r = await runDriver<NoopActionsResult>(
          'noop-actions',
          { casAddress: server.addresses.scheduler, schedulerAddress: server.addresses.scheduler, runId: randomUUID(), sequential: settings.executeSequential, throughput: 0, concurrency: IN_FLIGHT },
          10 * 60_000,
        );
        p50s.push(percentile(r.latenciesMs, 50));
      }
    } finally {
      await worker.stop();
    }
  } finally {
    await server.stop();
  }
  return p50s;
}

/** E1-local-p50 and E1-bwrap-p50 (only where bubblewrap is installed). */
export async function runRunnerComparison(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const what = `Execute of distinct \`true\` actions, skip_cache_lookup, a separate worker with ${SLOTS} slots`;
  const withBwrap = existsSync('/usr/bin/bwrap');
  return rowsOrFailure(
    [
      { id: 'E1-local-p50', what, unit: 'ms', target: 'reported' },
      ...(withBwrap ? [{ id: 'E1-bwrap-p50', what, unit: 'ms', target: `<= E1-local-p50 + ${SANDBOX_P50_BUDGET_MS} ms` }] : []),
    ],
    ctx.log,
    async () => {
      const local = await runnerP50s(ctx, 'local');
      const localP50 = percentile(local, 50);
      const rows = [row({ id: 'E1-local-p50', what: `${what}: --runner=local, p50 of ${ctx.settings.executeSequential} sequential`, unit: 'ms', samples: local })];
      if (withBwrap) {
        const bwrap = await runnerP50s(ctx, 'bwrap');
        rows.push(
          row({
            id: 'E1-bwrap-p50',
            what: `${what}: --runner=bwrap, p50 of ${ctx.settings.executeSequential} sequential (the sandbox's cost over E1-local-p50)`,
            unit: 'ms',
            samples: bwrap,
            target: `<= E1-local-p50 + ${SANDBOX_P50_BUDGET_MS} ms`,
            meets: (v) => v <= localP50 + SANDBOX_P50_BUDGET_MS,
          }),
        );
      }
      return rows;
    },
  );
}

export async function runExecutionBenchmark(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const reps = settings.repetitions;
  const what = `Execute of distinct \`true\` actions, skip_cache_lookup, ${SLOTS} slots`;
  return rowsOrFailure(
    [
      { id: 'E1-p50', what, unit: 'ms', target: `p50 < ${P50_LIMIT_MS} ms` },
      { id: 'E1-p99', what, unit: 'ms', target: 'reported' },
      { id: 'E1-rate', what, unit: 'actions/s', target: `>= ${MIN_ACTIONS_PER_S}/s` },
    ],
    ctx.log,
    async () => {
      const server = await ctx.startServe(serveAllArgs(join(ctx.tmpDir, 'e1-storage'), join(ctx.tmpDir, 'e1-work'), SLOTS), ['apiserver', 'scheduler']);
      const p50s: number[] = [];
      const p99s: number[] = [];
      const rates: number[] = [];
      try {
        for (let rep = 0; rep < reps; rep++) {
          ctx.log(`E1: ${settings.executeSequential} sequential + ${settings.executeThroughput} concurrent no-op actions, repetition ${rep + 1}/${reps}`);
          const r = await runDriver<NoopActionsResult>(
            'noop-actions',
            {
              casAddress: server.addresses.scheduler,
              schedulerAddress: server.addresses.scheduler,
              runId: randomUUID(),
              sequential: settings.executeSequential,
              throughput: settings.executeThroughput,
              concurrency: IN_FLIGHT,
            },
            10 * 60_000,
          );
          p50s.push(percentile(r.latenciesMs, 50));
          p99s.push(percentile(r.latenciesMs, 99));
          rates.push(r.throughputActions / r.seconds);
        }
      } finally {
        await server.stop();
      }
      return [
        row({
          id: 'E1-p50',
          what: `${what}: round trip with an idle worker, p50 of ${settings.executeSequential} sequential (baseline: local spawn of true)`,
          unit: 'ms',
          samples: p50s,
          baseline: ctx.baselines.get(BASELINE.spawnP50),
          target: `p50 < ${P50_LIMIT_MS} ms`,
          meets: (v) => v < P50_LIMIT_MS,
        }),
        row({ id: 'E1-p99', what: `${what}: round trip, p99 of ${settings.executeSequential} sequential`, unit: 'ms', samples: p99s, baseline: ctx.baselines.get(BASELINE.spawnP50) }),
        row({
          id: 'E1-rate',
          what: `${what}: ${settings.executeThroughput} actions, ${IN_FLIGHT} in flight (baseline: local spawn rate, 2 at once)`,
          unit: 'actions/s',
          samples: rates,
          baseline: ctx.baselines.get(BASELINE.spawnRate),
          target: `>= ${MIN_ACTIONS_PER_S}/s`,
          meets: (v) => v >= MIN_ACTIONS_PER_S,
        }),
      ];
    },
  );
}

/**
 * E1: the no-op action round trip through a fresh `serve all` with 2 worker slots: sequential
 * latency with an idle worker, then throughput with enough actions in flight to keep both slots busy.
 */
import { randomUUID } from 'node:crypto';
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

/**
 * E1: the no-op action round trip through a fresh `serve all` with 2 worker slots (its default
 * runner: bwrap when installed): sequential latency with an idle worker, then throughput with enough
 * actions in flight to keep both slots busy; once per scheduler state backend. E1-local / E1-bwrap:
 * the same sequential latency with the worker as its own `serve worker --runner=<kind>` process beside
 * `serve all --slots=0`, so the two runners are compared in one topology (the sandbox may cost at
 * most 5 ms p50).
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { NoopActionsResult } from '../jobs/execution-jobs.js';
import { runDriver, type ServeProcess, serveAllArgs } from '../lib/processes.js';
import type { RedisServer } from '../../test/helpers/redis-server.js';
import { commandStatsDelta, redisCommandStats, startBenchRedis } from '../lib/redis.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { percentile } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';
import { BASELINE } from './baselines.js';

const SLOTS = 2;
const IN_FLIGHT = 16;
const P50_LIMIT_MS = 10;
const MIN_ACTIONS_PER_S = 200;
/** What a durable state (sqlite, redis) may cost over memory at p50 (issue 12). */
const DURABLE_OVERHEAD_LIMIT_MS = 3;
const SANDBOX_P50_BUDGET_MS = 5;

/** p50 of sequential no-op actions on a `serve worker --runner=<runner>` beside `serve all --slots=0`. */
async function runnerP50s(ctx: BenchContext, runner: 'local' | 'bwrap'): Promise<number[]> {
  const { settings } = ctx;
  // The separate worker dials the scheduler's private worker port, which serve all opens only when asked.
  const server = await ctx.startServe(
    [...serveAllArgs(join(ctx.tmpDir, `e1-${runner}-storage`), join(ctx.tmpDir, `e1-${runner}-unused`), 0), '--worker_listen=127.0.0.1:0'],
    ['apiserver', 'scheduler', 'workers'],
  );
  const p50s: number[] = [];
  try {
    const worker = await ctx.startServe(
      [
        'worker',
        `--scheduler=${server.addresses.workers}`,
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

interface E1Samples {
  p50s: number[];
  p99s: number[];
  rates: number[];
  /** With Redis state: scripts run (EVALSHA, one round trip each) and redis-server's time in them, per action. */
  redisScriptsPerAction: number[];
  redisUsecPerAction: number[];
  /** The last repetition's redis-server calls and time per action, by command (scripts' own commands included). */
  redisByCommand?: Record<string, { calls: number; us: number }>;
}

type Backend = 'sqlite' | 'memory' | 'redis';

/** One scheduler state under test: its `serve all` (and redis-server), and what its repetitions measured. */
interface E1Target {
  backend: Backend;
  prefix: string;
  server?: ServeProcess;
  redis?: RedisServer;
  samples: E1Samples;
  /** Why it could not be started or measured: its rows are failures. */
  error?: unknown;
}

/** One repetition of E1 against `target`'s server: `sequential` one by one, then `throughput` 16 in flight. */
async function measureOnce(target: E1Target, sequential: number, throughput: number): Promise<NoopActionsResult> {
  const server = target.server!;
  return runDriver<NoopActionsResult>(
    'noop-actions',
    { casAddress: server.addresses.scheduler, schedulerAddress: server.addresses.scheduler, runId: randomUUID(), sequential, throughput, concurrency: IN_FLIGHT },
    10 * 60_000,
  );
}

/** Records a repetition, with redis-server's counts over it when the target uses Redis. */
async function recordRepetition(ctx: BenchContext, target: E1Target): Promise<void> {
  const { settings } = ctx;
  const { samples, redis } = target;
  const before = redis ? await redisCommandStats(redis.url) : undefined;
  const r = await measureOnce(target, settings.executeSequential, settings.executeThroughput);
  samples.p50s.push(percentile(r.latenciesMs, 50));
  samples.p99s.push(percentile(r.latenciesMs, 99));
  samples.rates.push(r.throughputActions / r.seconds);
  if (redis && before) {
    const delta = commandStatsDelta(before, await redisCommandStats(redis.url));
    const actions = settings.executeSequential + settings.executeThroughput;
    samples.redisScriptsPerAction.push((delta.byCommand.evalsha?.calls ?? 0) / actions);
    // A script's usec includes the commands it calls (which commandstats also counts on their own).
    samples.redisUsecPerAction.push((delta.byCommand.evalsha?.usec ?? 0) / actions);
    samples.redisByCommand = Object.fromEntries(
      Object.entries(delta.byCommand)
        .sort(([, x], [, y]) => y.usec - x.usec)
        .map(([command, { calls, usec }]) => [command, { calls: Math.round((calls / actions) * 100) / 100, us: Math.round(usec / actions) }]),
    );
  }
}

/**
 * E1 for each scheduler state, side by side: the default (`sqlite`, <storage_dir>/scheduler.db) as
 * E1-*, `memory` as E1-memory-*, `redis` (a redis-server the bench starts on loopback) as
 * E1-redis-*, and what durability costs over memory (E1-sqlite-overhead-p50,
 * E1-redis-overhead-p50: at most 3 ms each, issue 12). The three `serve all` run side by side (idle
 * but for the one measured); each gets a warm-up run first (not counted), then the repetitions go
 * round the three, starting one later each time, so that each repetition of a durable state has a
 * memory one measured in the same minute to be compared with.
 */
export async function runExecutionBenchmark(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const targets: E1Target[] = (['sqlite', 'memory', 'redis'] as const).map((backend) => ({
    backend,
    prefix: backend === 'sqlite' ? 'E1' : `E1-${backend}`,
    samples: { p50s: [], p99s: [], rates: [], redisScriptsPerAction: [], redisUsecPerAction: [] },
  }));
  try {
    for (const target of targets) {
      try {
        if (target.backend === 'redis') target.redis = await startBenchRedis(ctx.tmpDir);
        const extraArgs = target.backend === 'memory' ? ['--state=memory'] : target.redis ? [`--state=${target.redis.url}/0`] : [];
        const { prefix } = target;
        target.server = await ctx.startServe([...serveAllArgs(join(ctx.tmpDir, `${prefix}-storage`), join(ctx.tmpDir, `${prefix}-work`), SLOTS), ...extraArgs], ['apiserver', 'scheduler']);
        ctx.log(`${prefix}: warm-up, ${Math.ceil(settings.executeSequential / 4)} sequential no-op actions (not counted)`);
        await measureOnce(target, Math.ceil(settings.executeSequential / 4), 0);
      } catch (err) {
        target.error = err;
      }
    }
    for (let rep = 0; rep < settings.repetitions; rep++) {
      for (let k = 0; k < targets.length; k++) {
        const target = targets[(rep + k) % targets.length]!;
        if (target.error) continue;
        ctx.log(`${target.prefix}: ${settings.executeSequential} sequential + ${settings.executeThroughput} concurrent no-op actions, repetition ${rep + 1}/${settings.repetitions}`);
        try {
          await recordRepetition(ctx, target);
        } catch (err) {
          target.error = err;
        }
      }
    }
  } finally {
    for (const target of targets) {
      await target.server?.stop();
      await target.redis?.stop();
    }
  }
  const rows: BenchmarkRow[] = [];
  const p50ByBackend = new Map<string, number[]>();
  for (const target of targets) {
    const { backend, prefix, samples } = target;
    const what = `Execute of distinct \`true\` actions, skip_cache_lookup, ${SLOTS} slots, ${backend} scheduler state`;
    rows.push(
      ...(await rowsOrFailure(
        [
          { id: `${prefix}-p50`, what, unit: 'ms', target: `p50 < ${P50_LIMIT_MS} ms` },
          { id: `${prefix}-p99`, what, unit: 'ms', target: 'reported' },
          { id: `${prefix}-rate`, what, unit: 'actions/s', target: `>= ${MIN_ACTIONS_PER_S}/s` },
        ],
        ctx.log,
        async () => {
          if (target.error) throw target.error;
          const { p50s, p99s, rates } = samples;
          p50ByBackend.set(backend, p50s);
          return [
            row({
              id: `${prefix}-p50`,
              what: `${what}: round trip with an idle worker, p50 of ${settings.executeSequential} sequential (baseline: local spawn of true)`,
              unit: 'ms',
              samples: p50s,
              baseline: ctx.baselines.get(BASELINE.spawnP50),
              target: `p50 < ${P50_LIMIT_MS} ms`,
              meets: (v) => v < P50_LIMIT_MS,
            }),
            row({ id: `${prefix}-p99`, what: `${what}: round trip, p99 of ${settings.executeSequential} sequential`, unit: 'ms', samples: p99s, baseline: ctx.baselines.get(BASELINE.spawnP50) }),
            row({
              id: `${prefix}-rate`,
              what: `${what}: ${settings.executeThroughput} actions, ${IN_FLIGHT} in flight (baseline: local spawn rate, 2 at once)`,
              unit: 'actions/s',
              samples: rates,
              baseline: ctx.baselines.get(BASELINE.spawnRate),
              target: `>= ${MIN_ACTIONS_PER_S}/s`,
              meets: (v) => v >= MIN_ACTIONS_PER_S,
            }),
            ...(backend === 'redis'
              ? [
                  row({ id: 'E1-redis-scripts', what: `${what}: Lua scripts run per action (EVALSHA calls, one round trip each, INFO commandstats)`, unit: 'calls', samples: samples.redisScriptsPerAction }),
                  row({ id: 'E1-redis-server-us', what: `${what}: redis-server's time in those scripts per action (EVALSHA usec, INFO commandstats)`, unit: 'us', samples: samples.redisUsecPerAction, details: { byCommand: samples.redisByCommand } }),
                ]
              : []),
          ];
        },
      )),
    );
  }
  const memory = p50ByBackend.get('memory');
  for (const backend of ['sqlite', 'redis'] as const) {
    const durable = p50ByBackend.get(backend);
    if (!durable || !memory) continue;
    rows.push(
      row({
        id: `E1-${backend}-overhead-p50`,
        what: `E1 p50 with ${backend} state minus E1 p50 with memory state, per repetition`,
        unit: 'ms',
        samples: durable.map((v, i) => v - (memory[i] ?? memory[0]!)),
        noRatio: true,
        target: `<= ${DURABLE_OVERHEAD_LIMIT_MS} ms`,
        meets: (v) => v <= DURABLE_OVERHEAD_LIMIT_MS,
      }),
    );
  }
  return rows;
}

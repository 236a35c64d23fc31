/**
 * Q1: the scheduler's queue module at scale, per state backend: 100k queued actions, the claim of
 * the next matching one (p50), and the RSS of the process holding them. No network for memory and
 * sqlite; for redis the queue is the Redis scripts on a redis-server the bench starts on loopback
 * (one round trip per claim), and Redis's own RSS is reported in the row's details.
 */
import { join } from 'node:path';
import type { QueueScaleResult } from '../jobs/queue-jobs.js';
import { runDriver } from '../lib/processes.js';
import { startBenchRedis } from '../lib/redis.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { percentile } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';

const QUEUED = 100_000;
const CLAIM_P50_LIMIT_MS = 5;
const RSS_LIMIT_BYTES = 512 * 1024 ** 2;

export async function runQueueScaleBenchmark(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const claims = ctx.settings.mode === 'quick' ? 1_000 : 5_000;
  const rows: BenchmarkRow[] = [];
  for (const backend of ['memory', 'sqlite', 'redis'] as const) {
    const what = `${QUEUED} queued actions (8 platforms), ${backend} state`;
    rows.push(
      ...(await rowsOrFailure(
        [
          { id: `Q1-${backend}-claim-p50`, what, unit: 'ms', target: `p50 < ${CLAIM_P50_LIMIT_MS} ms` },
          { id: `Q1-${backend}-rss`, what, unit: 'MiB', target: '< 512 MiB' },
        ],
        ctx.log,
        async () => {
          ctx.log(`Q1: ${QUEUED} queued, ${claims} claims, ${backend} state`);
          const redis = backend === 'redis' ? await startBenchRedis(ctx.tmpDir) : undefined;
          let r: QueueScaleResult;
          try {
            const state = backend === 'memory' ? 'memory' : redis ? `${redis.url}/0` : `sqlite:${join(ctx.tmpDir, 'q1', `${Date.now()}.db`)}`;
            r = await runDriver<QueueScaleResult>('queue-scale', { state, queued: QUEUED, claims }, 10 * 60_000);
          } finally {
            await redis?.stop();
          }
          return [
            row({
              id: `Q1-${backend}-claim-p50`,
              what: `${what}: claim of the next matching action (Action read back, lease written), p50 of ${claims}`,
              unit: 'ms',
              samples: [percentile(r.claimLatenciesMs, 50)],
              target: `p50 < ${CLAIM_P50_LIMIT_MS} ms`,
              meets: (v) => v < CLAIM_P50_LIMIT_MS,
              details: { p99Ms: percentile(r.claimLatenciesMs, 99), fillSeconds: r.fillSeconds },
            }),
            row({
              id: `Q1-${backend}-rss`,
              what: backend === 'redis' ? `${what}: RSS of the scheduler process (the queue itself is in Redis: see redisRssMiB)` : `${what}: RSS of the process holding the queue`,
              unit: 'MiB',
              samples: [r.rssBytes / 1024 ** 2],
              target: '< 512 MiB',
              meets: (v) => v * 1024 ** 2 < RSS_LIMIT_BYTES,
              details: { heapUsedMiB: r.heapUsedBytes / 1024 ** 2, ...(r.redisRssBytes !== undefined ? { redisRssMiB: r.redisRssBytes / 1024 ** 2 } : {}) },
            }),
          ];
        },
      )),
    );
  }
  return rows;
}

/**
 * C5: FindMissingBlobs of 10k digests against a CAS holding many blobs. The store is populated on
 * disk in the filesystem store's layout before `serve apiserver` starts (a million uploads would
 * take far longer and build the same index); the server's start-up, which rebuilds that index, is
 * reported as a side figure.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { LatencyResult, TimedResult } from '../jobs/raw-jobs.js';
import { runDriver } from '../lib/processes.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { percentile } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';
import { BASELINE } from './baselines.js';

const DIGESTS_PER_QUERY = 10_000;
const P50_LIMIT_MS = 10;

export async function runFindMissingBenchmark(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const blobs = settings.findMissingStoreBlobs;
  const queries = settings.findMissingQueries;
  const storeLabel = `${blobs.toLocaleString('en-US')} blobs`;
  const what = `FindMissingBlobs of ${DIGESTS_PER_QUERY / 1000}k digests (half present) against a CAS of ${storeLabel}`;
  return rowsOrFailure(
    [
      { id: 'C5-p50', what, unit: 'ms', target: `p50 < ${P50_LIMIT_MS} ms` },
      { id: 'C5-p99', what, unit: 'ms', target: 'reported' },
      { id: 'C5-startup', what: `serve apiserver start-up over ${storeLabel}`, unit: 's', target: 'reported' },
    ],
    ctx.log,
    async () => {
      const storageDir = join(ctx.tmpDir, 'c5-storage');
      ctx.log(`C5: writing ${storeLabel} into ${storageDir}`);
      const populated = await runDriver<TimedResult>('populate-cas', { casDir: join(storageDir, 'cas'), count: blobs }, 30 * 60_000);
      ctx.log(`C5: populated in ${populated.seconds.toFixed(1)} s; starting the apiserver`);
      const server = await ctx.startServe(['apiserver', '--listen=127.0.0.1:0', `--storage_dir=${storageDir}`, '--max_size=64G', '--log_level=warn'], ['apiserver']);
      try {
        ctx.log(`C5: apiserver started in ${(server.startupMs / 1000).toFixed(1)} s; ${queries} queries`);
        const r = await runDriver<LatencyResult>(
          'find-missing',
          { address: server.addresses.apiserver, storeBlobs: blobs, queries, digestsPerQuery: DIGESTS_PER_QUERY, seed: randomUUID() },
          10 * 60_000,
        );
        const baseline = ctx.baselines.get(BASELINE.unaryP50);
        const p50 = percentile(r.latenciesMs, 50);
        const p99 = percentile(r.latenciesMs, 99);
        return [
          row({
            id: 'C5-p50',
            what: `${what}, p50 of ${queries} (baseline: raw no-op unary p50)`,
            unit: 'ms',
            samples: [p50],
            baseline,
            target: `p50 < ${P50_LIMIT_MS} ms`,
            meets: (v) => v < P50_LIMIT_MS,
            details: { storeBlobs: blobs, queries, digestsPerQuery: DIGESTS_PER_QUERY },
          }),
          row({ id: 'C5-p99', what: `${what}, p99 of ${queries}`, unit: 'ms', samples: [p99], baseline, details: { maxMs: Math.max(...r.latenciesMs) } }),
          row({
            id: 'C5-startup',
            what: `serve apiserver start-up (index rebuild) over ${storeLabel} written on disk in ${populated.seconds.toFixed(0)} s`,
            unit: 's',
            samples: [server.startupMs / 1000],
            details: { populateSeconds: populated.seconds },
          }),
        ];
      } finally {
        await server.stop();
        const removing = performance.now();
        await rm(storageDir, { recursive: true, force: true });
        ctx.log(`C5: removed the store in ${((performance.now() - removing) / 1000).toFixed(1)} s`);
      }
    },
  );
}

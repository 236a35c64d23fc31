/**
 * S1: upload throughput of small blobs through a CAS sharded over two `serve apiserver` processes
 * (ShardingBlobStore over two GrpcBlobStores, as `--cas a,b` builds it on a worker or scheduler),
 * against the same client code over one of those apiservers alone. Repetitions of the two variants
 * alternate, and each uploads blobs neither apiserver has seen. On a machine with few cores the two
 * apiservers compete for them, so the ratio says what sharding costs or gains here, not at scale.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { TimedResult } from '../jobs/raw-jobs.js';
import { runDriver, type ServeProcess } from '../lib/processes.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { median } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';

const IN_FLIGHT = 100;

export async function runShardingBenchmark(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const count = settings.smallBlobCount;
  const what = (variant: string) => `${count} blobs of 100 B-4 KiB put through ShardingBlobStore (${IN_FLIGHT} in flight) over ${variant}`;
  return rowsOrFailure(
    [
      { id: 'S1-single', what: what('one apiserver'), unit: 'blobs/s', target: 'reported' },
      { id: 'S1-sharded', what: what('two apiservers'), unit: 'blobs/s', target: 'reported' },
    ],
    ctx.log,
    async () => {
      const servers: ServeProcess[] = [];
      try {
        for (const name of ['s1-a', 's1-b']) {
          servers.push(await ctx.startServe(['apiserver', '--listen=127.0.0.1:0', `--storage_dir=${join(ctx.tmpDir, name)}`, '--log_level=warn'], ['apiserver']));
        }
        const addresses = servers.map((s) => s.addresses.apiserver!);
        const variants = [
          { id: 'S1-single', addresses: addresses.slice(0, 1) },
          { id: 'S1-sharded', addresses },
        ];
        const samples = new Map<string, number[]>(variants.map((v) => [v.id, []]));
        const runId = randomUUID().slice(0, 8);
        for (let rep = 0; rep < settings.repetitions; rep++) {
          for (const v of variants) {
            ctx.log(`S1: ${count} small blobs over ${v.addresses.length} apiserver(s), repetition ${rep + 1}/${settings.repetitions}`);
            const r = await runDriver<TimedResult & { blobs: number }>('sharded-blobs', { addresses: v.addresses, seed: `${runId}-s1-${v.id}-${rep}`, count, inFlight: IN_FLIGHT }, 600_000);
            samples.get(v.id)!.push(r.blobs / r.seconds);
          }
        }
        const single = median(samples.get('S1-single')!);
        return [
          row({ id: 'S1-single', what: what('one apiserver'), unit: 'blobs/s', samples: samples.get('S1-single')!, details: { inFlight: IN_FLIGHT } }),
          row({
            id: 'S1-sharded',
            what: `${what('two apiservers')} (baseline: S1-single)`,
            unit: 'blobs/s',
            samples: samples.get('S1-sharded')!,
            baseline: single,
            details: { inFlight: IN_FLIGHT, shards: 2 },
          }),
        ];
      } finally {
        for (const s of servers) await s.stop();
      }
    },
  );
}

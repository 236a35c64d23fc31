/**
 * PK: C3's small blobs against two `serve all` processes that differ only in their CAS node: one
 * file per blob (`small_blob_caching` over `disk`, the default tree) and pack files
 * (`small_blob_caching` over `packed` over `disk`). Each repetition runs both variants on both
 * servers back to back, alternating, so that both see the same machine load; every `-packed` row's
 * baseline is its per-file twin. The server's CPU time per blob (user + system, from /proc) is
 * reported beside the rates. Run alone with `--only=PK`.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TimedResult } from '../jobs/raw-jobs.js';
import { readCpuSeconds } from '../lib/cpu-time.js';
import { runDriver, type ServeProcess } from '../lib/processes.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { median } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';

const IN_FLIGHT = 100;
const STORES = ['files', 'packed'] as const;
const VARIANTS = ['bytestream', 'batch'] as const;
type Store = (typeof STORES)[number];

/** The config file of one server: the standard tree, with the CAS's disk node under a `packed` node or not. */
function configOf(store: Store, dir: string): unknown {
  const disk = { disk: { path: join(dir, 'cas'), max_size_bytes: '64GiB' } };
  const casBackend = store === 'files' ? disk : { packed: { path: join(dir, 'packs'), max_size_bytes: '4GiB', backend: disk } };
  return {
    log_level: 'warn',
    scheduler: { state: 'memory' },
    storage: {
      cas: { small_blob_caching: { max_size_bytes: '64MiB', backend: casBackend } },
      action_cache: { disk: { path: join(dir, 'ac'), max_size_bytes: '1GiB' } },
    },
  };
}

export async function runPackedBenchmark(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const count = settings.smallBlobCount;
  const what = (store: Store, variant: string) =>
    `${count} blobs of 100 B-4 KiB, ${variant === 'batch' ? 'FindMissingBlobs + BatchUpdateBlobs' : `one ByteStream Write each, ${IN_FLIGHT} in flight`}, ${store === 'files' ? 'one file per blob' : 'pack files'}`;
  const ids = (variant: string, store: Store) => ({ rate: `PK-${variant}-${store}`, cpu: `PK-${variant}-${store}-cpu` });
  const specs = VARIANTS.flatMap((v) =>
    STORES.flatMap((s) => [
      { id: ids(v, s).rate, what: what(s, v), unit: 'blobs/s', target: 'reported' },
      { id: ids(v, s).cpu, what: `server CPU per blob: ${what(s, v)}`, unit: 'us', target: 'reported' },
    ]),
  );
  return rowsOrFailure(specs, ctx.log, async () => {
    const servers = new Map<Store, ServeProcess>();
    try {
      for (const store of STORES) {
        const dir = join(ctx.tmpDir, `pk-${store}`);
        const configFile = join(ctx.tmpDir, `pk-${store}.json`);
        await writeFile(configFile, JSON.stringify(configOf(store, dir)));
        const args = ['all', `--config=${configFile}`, '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', '--slots=2', `--work_dir=${join(dir, 'work')}`];
        servers.set(store, await ctx.startServe(args, ['apiserver', 'scheduler']));
      }
      const samples = new Map<string, number[]>(specs.map((s) => [s.id, []]));
      const runId = randomUUID().slice(0, 8);
      for (let rep = 0; rep < settings.repetitions; rep++) {
        for (const variant of VARIANTS) {
          // Alternate which store goes first, so that neither always runs on a warmer machine.
          for (const store of rep % 2 === 0 ? STORES : [...STORES].reverse()) {
            const server = servers.get(store)!;
            ctx.log(`PK: ${count} small blobs by ${variant} into ${store}, repetition ${rep + 1}/${settings.repetitions}`);
            const cpuBefore = readCpuSeconds(server.pid);
            const r = await runDriver<TimedResult & { blobs: number }>(
              'small-blobs',
              { address: server.addresses.apiserver, seed: `${runId}-pk-${store}-${variant}-${rep}`, count, variant, inFlight: IN_FLIGHT },
              600_000,
            );
            const cpuAfter = readCpuSeconds(server.pid);
            samples.get(ids(variant, store).rate)!.push(r.blobs / r.seconds);
            if (cpuBefore !== undefined && cpuAfter !== undefined) samples.get(ids(variant, store).cpu)!.push(((cpuAfter - cpuBefore) * 1e6) / r.blobs);
          }
        }
      }
      const medianOf = (id: string) => (samples.get(id)!.length > 0 ? median(samples.get(id)!) : undefined);
      return VARIANTS.flatMap((v) =>
        STORES.flatMap((s) => {
          const twin = s === 'packed' ? ids(v, 'files') : undefined;
          return [
            row({ id: ids(v, s).rate, what: what(s, v), unit: 'blobs/s', samples: samples.get(ids(v, s).rate)!, baseline: twin && medianOf(twin.rate), details: { count } }),
            row({ id: ids(v, s).cpu, what: `server CPU per blob: ${what(s, v)}`, unit: 'us', samples: samples.get(ids(v, s).cpu)!, baseline: twin && medianOf(twin.cpu) }),
          ];
        }),
      );
    } finally {
      for (const server of servers.values()) await server.stop();
    }
  });
}

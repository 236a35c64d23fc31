/**
 * `serve apiserver --processes N` (issue 15: "with --processes 2, two clients in parallel >= 1.6x
 * one client"): C1 uploads (1 MiB messages) by one client and by two clients at once, against an
 * apiserver with 1 process and one with 2, started alike on disk storage. Each repetition measures
 * the four variants in turn, so that they see the same machine load. Two clients' figure is their
 * bytes together over the longer of their two upload times (each driver times its own upload, so
 * process start-up is left out; the uploads overlap all but a few percent). Its baseline is the
 * one-client figure of the same server. The node:cluster primary hands connections out in turn, so
 * the two clients' connections land on different processes. Run alone with `--only=PROCS`.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { TimedResult } from '../jobs/raw-jobs.js';
import { runDriver, transferTimeoutMs, type ServeProcess } from '../lib/processes.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { MiB, formatBytes, median } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';

const CHUNK_BYTES = 1024 * 1024;
const TARGET_RATIO = 1.6;

export async function runProcessesBenchmarks(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const size = settings.streamBytes;
  const ids = [1, 2].flatMap((p) => [`C1-procs${p}-1client`, `C1-procs${p}-2clients`]);
  const specs = ids.map((id) => ({ id, what: 'ByteStream upload, serve apiserver --processes', unit: 'MiB/s', target: id === 'C1-procs2-2clients' ? `>= ${TARGET_RATIO}x one client` : 'reported' }));
  return rowsOrFailure(specs, ctx.log, async () => {
    const servers: { processes: number; server: ServeProcess; casDir: string }[] = [];
    try {
      for (const processes of [1, 2]) {
        const storageDir = join(ctx.tmpDir, `procs-bench-${processes}`);
        const args = ['apiserver', `--processes=${processes}`, '--listen=127.0.0.1:0', `--storage_dir=${storageDir}`, '--max_size=64G', '--log_level=warn'];
        servers.push({ processes, server: await ctx.startServe(args, ['apiserver']), casDir: join(storageDir, 'cas') });
      }
      const samples = new Map<string, number[]>(ids.map((id) => [id, []]));
      const runId = randomUUID().slice(0, 8);
      for (let rep = 0; rep < settings.repetitions; rep++) {
        for (const { processes, server, casDir } of servers) {
          for (const clients of [1, 2]) {
            const id = `C1-procs${processes}-${clients === 1 ? '1client' : '2clients'}`;
            ctx.log(`${id}: ${clients} x upload ${formatBytes(size)}, repetition ${rep + 1}/${settings.repetitions}`);
            const results = await Promise.all(
              Array.from({ length: clients }, (_, c) =>
                runDriver<TimedResult>('bytestream-upload', { address: server.addresses.apiserver, seed: `${runId}-procs-${id}-${rep}-${c}`, sizeBytes: size, chunkBytes: CHUNK_BYTES, casDir }, transferTimeoutMs(size * clients)),
              ),
            );
            samples.get(id)!.push((clients * size) / MiB / Math.max(...results.map((r) => r.seconds)));
          }
        }
      }
      return ids.map((id) => {
        const two = id.endsWith('2clients');
        const processes = Number(id.slice('C1-procs'.length, 'C1-procs'.length + 1));
        return row({
          id,
          what: `ByteStream upload of ${formatBytes(size)} in 1 MiB messages, ${two ? 'two clients at once (bytes together / longer time)' : 'one client'}, serve apiserver --processes ${processes}${two ? ' (baseline: one client, same server)' : ''}`,
          unit: 'MiB/s',
          samples: samples.get(id)!,
          baseline: two ? median(samples.get(id.replace('2clients', '1client'))!) : undefined,
          target: two && processes === 2 ? `>= ${TARGET_RATIO}x one client` : 'reported',
          meets: two && processes === 2 ? (_v, ratio) => ratio !== null && ratio >= TARGET_RATIO : undefined,
          details: { sizeBytes: size },
        });
      });
    } finally {
      for (const s of servers) await s.server.stop();
    }
  });
}

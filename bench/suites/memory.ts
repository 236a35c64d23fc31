/**
 * M1's "flat with blob size" and C2's memory bound: each transfer runs against a fresh `serve all`,
 * and the server's peak RSS above its idle RSS is compared between a blob of the full size and one
 * of a quarter of it (`settings.memoryProbeBytes`). A fresh process per transfer matters: once a
 * transfer has grown the V8 heap, the next one reuses that memory and its own growth is invisible.
 */
import { join } from 'node:path';
import type { TimedResult } from '../jobs/raw-jobs.js';
import { runDriver, serveAllArgs, transferTimeoutMs } from '../lib/processes.js';
import { measureRss, toMiB } from '../lib/rss.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { MiB, formatBytes } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';

/** The full size may grow the server by this much more than a quarter of it and still count as flat. */
const FLAT_TOLERANCE_MIB = 16;
const C2_RSS_GROWTH_LIMIT_MIB = 64;

export interface MemoryBenchmarkInput {
  storageDir: string;
  workDir: string;
  runId: string;
}

type Transfer = { kind: 'upload'; chunkBytes: number; sizeBytes: number; seed: string } | { kind: 'download'; sizeBytes: number; seed: string };

export async function runMemoryBenchmarks(ctx: BenchContext, input: MemoryBenchmarkInput): Promise<BenchmarkRow[]> {
  const [quarter, size] = ctx.settings.memoryProbeBytes;
  const casDir = join(input.storageDir, 'cas');
  const seed = (what: string, sizeBytes: number) => `${input.runId}-m1-${what}-${sizeBytes}`;
  const all = [
    { id: 'M1-flat-up-16k', verb: 'upload in 16 KiB messages', small: upload(16 * 1024, quarter), large: upload(16 * 1024, size) },
    { id: 'M1-flat-up-1m', verb: 'upload in 1 MiB messages', small: upload(MiB, quarter), large: upload(MiB, size) },
    // Downloads read the blobs the 16 KiB uploads just stored.
    { id: 'M1-flat-down', verb: 'download', small: download(quarter), large: download(size) },
  ] as const satisfies readonly { id: string; verb: string; small: Transfer; large: Transfer }[];
  // Quick mode skips the 1 MiB uploads: they show the same as the 16 KiB ones and cost two servers.
  const pairs = ctx.settings.mode === 'quick' ? all.filter((p) => p.id !== 'M1-flat-up-1m') : all;
  function upload(chunkBytes: number, sizeBytes: number): Transfer {
    return { kind: 'upload', chunkBytes, sizeBytes, seed: seed(`up-${chunkBytes}`, sizeBytes) };
  }
  function download(sizeBytes: number): Transfer {
    return { kind: 'download', sizeBytes, seed: seed(`up-${16 * 1024}`, sizeBytes) };
  }

  /** Growth in MiB of a fresh server's RSS (peak minus idle) over one transfer. */
  const growthMiB = async (t: Transfer): Promise<number> => {
    ctx.log(`M1: ${t.kind} of ${formatBytes(t.sizeBytes)}${t.kind === 'upload' ? ` in ${formatBytes(t.chunkBytes)} messages` : ''} on a fresh serve all`);
    const server = await ctx.startServe(serveAllArgs(input.storageDir, input.workDir), ['apiserver', 'scheduler']);
    try {
      const address = server.addresses.apiserver!;
      const params = t.kind === 'upload' ? { address, seed: t.seed, sizeBytes: t.sizeBytes, chunkBytes: t.chunkBytes, casDir } : { address, seed: t.seed, sizeBytes: t.sizeBytes };
      const { rss } = await measureRss(server.pid, () => runDriver<TimedResult>(`bytestream-${t.kind}`, params, transferTimeoutMs(t.sizeBytes)));
      return toMiB(rss.growthBytes);
    } finally {
      await server.stop();
    }
  };

  const rows: BenchmarkRow[] = [];
  for (const pair of pairs) {
    const what = `serve all RSS growth (peak - idle, fresh process) per ${pair.verb} of ${formatBytes(size)} (baseline: of ${formatBytes(quarter)})`;
    const target = `flat: +< ${FLAT_TOLERANCE_MIB} MiB`;
    rows.push(
      ...(await rowsOrFailure([{ id: pair.id, what, unit: 'MiB', target }], ctx.log, async () => {
        const small = await growthMiB(pair.small);
        const large = await growthMiB(pair.large);
        const out = [row({ id: pair.id, what, unit: 'MiB', samples: [large], baseline: small, noRatio: true, target, meets: (v) => v - small < FLAT_TOLERANCE_MIB })];
        if (pair.large.kind === 'download') {
          out.push(
            row({
              id: 'C2-rss',
              what: `serve all RSS growth (peak - idle, fresh process) while downloading ${formatBytes(size)}`,
              unit: 'MiB',
              samples: [large],
              target: `< ${C2_RSS_GROWTH_LIMIT_MIB} MiB`,
              meets: (v) => v < C2_RSS_GROWTH_LIMIT_MIB,
            }),
          );
        }
        return out;
      })),
    );
  }
  return rows;
}

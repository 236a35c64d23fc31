/**
 * C1 (ByteStream upload), C2 (ByteStream download) and C3 (many small blobs) against one
 * `bzutil serve all` process with a filesystem CAS, driven from driver processes over loopback; the
 * server's peak memory during C1 and C2 is M1's "during C1/C2" figure. Memory growth against blob
 * size is measured afterwards on fresh servers over the same storage (see memory.ts), because
 * memory that earlier transfers made the process take hides the growth of later ones.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { TimedResult } from '../jobs/raw-jobs.js';
import { runDriver, serveAllArgs, transferTimeoutMs, type ServeProcess } from '../lib/processes.js';
import { measureRss, readRss, toMiB, type RssPhase } from '../lib/rss.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { MiB, formatBytes } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';
import { BASELINE, STREAM_CHUNK_SIZES, UNARY_IN_FLIGHT, chunkLabel } from './baselines.js';
import { runMemoryBenchmarks } from './memory.js';

const STREAM_RATIO_TARGET = 0.9;
const SMALL_BLOB_RATIO_TARGET = 0.7;
const SMALL_BLOBS_IN_FLIGHT = 100;

export async function runStorageBenchmarks(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const reps = settings.repetitions;
  const storageDir = join(ctx.tmpDir, 'serve-all-storage');
  const workDir = join(ctx.tmpDir, 'serve-all-work');
  const runId = randomUUID().slice(0, 8);
  const size = settings.streamBytes;
  const seedOf = (chunkBytes: number, rep: number) => `${runId}-c1-${size}-${chunkBytes}-${rep}`;
  const rows: BenchmarkRow[] = [];

  const server = await ctx.startServe(serveAllArgs(storageDir, workDir), ['apiserver', 'scheduler']);
  try {
    const address = server.addresses.apiserver!;
    const casDir = join(storageDir, 'cas');
    const idleMiB = toMiB(readRss(server.pid).rssBytes);
    const upload = (seed: string, chunkBytes: number) =>
      measureRss(server.pid, () => runDriver<TimedResult>('bytestream-upload', { address, seed, sizeBytes: size, chunkBytes, casDir }, transferTimeoutMs(size)));
    const download = (seed: string) => measureRss(server.pid, () => runDriver<TimedResult>('bytestream-download', { address, seed, sizeBytes: size }, transferTimeoutMs(size)));
    const streamTarget = `>= ${STREAM_RATIO_TARGET} x raw stream`;
    const meetsStream = (_v: number, ratio: number | null) => ratio !== null && ratio >= STREAM_RATIO_TARGET;

    // C1: every repetition uploads a new blob (the seed differs), alternating message sizes.
    const c1 = new Map<number, number[]>(STREAM_CHUNK_SIZES.map((c) => [c, []]));
    const c1Rss: RssPhase[] = [];
    rows.push(
      ...(await rowsOrFailure(
        STREAM_CHUNK_SIZES.map((c) => ({ id: `C1-${chunkLabel(c)}`, what: `ByteStream upload of ${formatBytes(size)}`, unit: 'MiB/s', target: streamTarget })),
        ctx.log,
        async () => {
          for (let rep = 0; rep < reps; rep++) {
            for (const chunkBytes of STREAM_CHUNK_SIZES) {
              ctx.log(`C1: upload ${formatBytes(size)} in ${formatBytes(chunkBytes)} messages, repetition ${rep + 1}/${reps}`);
              const { result, rss } = await upload(seedOf(chunkBytes, rep), chunkBytes);
              c1.get(chunkBytes)!.push(size / MiB / result.seconds);
              c1Rss.push(rss);
            }
          }
          return STREAM_CHUNK_SIZES.map((chunkBytes) =>
            row({
              id: `C1-${chunkLabel(chunkBytes)}`,
              what: `ByteStream upload of ${formatBytes(size)} random data in ${formatBytes(chunkBytes)} messages; hash verified, blob on disk`,
              unit: 'MiB/s',
              samples: c1.get(chunkBytes)!,
              baseline: ctx.baselines.get(BASELINE.upload(chunkBytes)),
              target: streamTarget,
              meets: meetsStream,
              details: { sizeBytes: size, chunkBytes },
            }),
          );
        },
      )),
    );
    if (c1Rss.length) rows.push(peakRow('M1-C1', 'C1', c1Rss, idleMiB));

    // C2 downloads the blobs that C1 uploaded in 1 MiB messages, one per repetition.
    const c2: number[] = [];
    const c2Rss: RssPhase[] = [];
    rows.push(
      ...(await rowsOrFailure([{ id: 'C2', what: `ByteStream download of ${formatBytes(size)}`, unit: 'MiB/s', target: streamTarget }], ctx.log, async () => {
        for (let rep = 0; rep < reps; rep++) {
          ctx.log(`C2: download ${formatBytes(size)}, repetition ${rep + 1}/${reps}`);
          const { result, rss } = await download(seedOf(MiB, rep));
          c2.push(size / MiB / result.seconds);
          c2Rss.push(rss);
        }
        return [
          row({
            id: 'C2',
            what: `ByteStream download of ${formatBytes(size)} (server sends 1 MiB messages), every byte checked`,
            unit: 'MiB/s',
            samples: c2,
            baseline: ctx.baselines.get(BASELINE.download(MiB)),
            target: streamTarget,
            meets: meetsStream,
            details: { sizeBytes: size },
          }),
        ];
      })),
    );
    if (c2Rss.length) rows.push(peakRow('M1-C2', 'C2', c2Rss, idleMiB));

    rows.push(...(await smallBlobRows(ctx, server, runId)));
  } finally {
    await server.stop();
  }
  rows.push(...(await runMemoryBenchmarks(ctx, { storageDir, workDir, runId })));
  return rows;
}

function peakRow(id: string, phase: string, phases: RssPhase[], idleMiB: number): BenchmarkRow {
  return row({
    id,
    what: `peak RSS of serve all during ${phase} (baseline: its RSS when idle before C1)`,
    unit: 'MiB',
    samples: [Math.max(...phases.map((p) => toMiB(p.peakBytes)))],
    baseline: idleMiB,
    details: { peakPerTransferMiB: phases.map((p) => toMiB(p.peakBytes)) },
  });
}

/** C3: small blobs by one ByteStream Write each (100 in flight) and by BatchUpdateBlobs. */
async function smallBlobRows(ctx: BenchContext, server: ServeProcess, runId: string): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const reps = settings.repetitions;
  const count = settings.smallBlobCount;
  const address = server.addresses.apiserver!;
  const variants = [
    { variant: 'bytestream', id: 'C3-bytestream', what: `${count} blobs of 100 B-4 KiB, one ByteStream Write each, ${SMALL_BLOBS_IN_FLIGHT} in flight` },
    { variant: 'batch', id: 'C3-batch', what: `${count} blobs of 100 B-4 KiB through FindMissingBlobs + BatchUpdateBlobs (CasClient.uploadBlobs)` },
  ] as const;
  const target = `>= ${SMALL_BLOB_RATIO_TARGET} x raw unary rate`;
  const samples = new Map<string, number[]>(variants.map((v) => [v.id, []]));
  return rowsOrFailure(
    variants.map((v) => ({ id: v.id, what: v.what, unit: 'blobs/s', target })),
    ctx.log,
    async () => {
      for (let rep = 0; rep < reps; rep++) {
        for (const v of variants) {
          ctx.log(`C3: ${count} small blobs by ${v.variant}, repetition ${rep + 1}/${reps}`);
          const seed = `${runId}-c3-${v.variant}-${rep}`;
          const r = await runDriver<TimedResult & { blobs: number }>('small-blobs', { address, seed, count, variant: v.variant, inFlight: SMALL_BLOBS_IN_FLIGHT }, 600_000);
          samples.get(v.id)!.push(r.blobs / r.seconds);
        }
      }
      return variants.map((v) =>
        row({
          id: v.id,
          what: v.what,
          unit: 'blobs/s',
          samples: samples.get(v.id)!,
          baseline: ctx.baselines.get(BASELINE.unaryRate),
          target,
          meets: (_v, ratio) => ratio !== null && ratio >= SMALL_BLOB_RATIO_TARGET,
          details: { count, baselineInFlight: UNARY_IN_FLIGHT },
        }),
      );
    },
  );
}

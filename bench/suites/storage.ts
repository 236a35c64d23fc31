/**
 * C1 (ByteStream upload), C2 (ByteStream download), C3 (many small blobs) and M1 (server memory)
 * against one `bzutil serve all` process with a filesystem CAS, driven from driver processes over
 * loopback. The server's resident memory is measured around every transfer; downloads and uploads
 * also run at a quarter of the size to show whether memory grows with blob size.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { TimedResult } from '../jobs/raw-jobs.js';
import { runDriver, type ServeProcess } from '../lib/processes.js';
import { measureRss, readRss, toMiB, type RssPhase } from '../lib/rss.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { MiB, formatBytes, median } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';
import { BASELINE, STREAM_CHUNK_SIZES, UNARY_IN_FLIGHT, chunkLabel } from './baselines.js';

const STREAM_RATIO_TARGET = 0.9;
const SMALL_BLOB_RATIO_TARGET = 0.7;
const C2_RSS_GROWTH_LIMIT_MIB = 64;
/** "Flat with blob size": the growth at the full size may exceed the growth at a quarter by this much. */
const FLAT_TOLERANCE_MIB = 16;
const SMALL_BLOBS_IN_FLIGHT = 100;

export async function runStorageBenchmarks(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const reps = settings.repetitions;
  const storageDir = join(ctx.tmpDir, 'serve-all-storage');
  const server = await ctx.startServe(
    [
      'all',
      '--apiserver_listen=127.0.0.1:0',
      '--scheduler_listen=127.0.0.1:0',
      '--slots=2',
      `--storage_dir=${storageDir}`,
      `--work_dir=${join(ctx.tmpDir, 'serve-all-work')}`,
      '--max_size=64G',
      '--log_level=warn',
    ],
    ['apiserver', 'scheduler'],
  );
  const address = server.addresses.apiserver!;
  const casDir = join(storageDir, 'cas');
  const runId = randomUUID().slice(0, 8);
  const size = settings.streamBytes;
  const smallSize = size / 4;
  const timeoutMs = Math.max(60_000, (size / (5 * MiB)) * 1000);
  const idleRssBytes = readRss(server.pid).rssBytes;
  const rows: BenchmarkRow[] = [];

  const upload = async (seed: string, sizeBytes: number, chunkBytes: number) =>
    measureRss(server.pid, () => runDriver<TimedResult>('bytestream-upload', { address, seed, sizeBytes, chunkBytes, casDir }, timeoutMs));
  const download = async (seed: string, sizeBytes: number) =>
    measureRss(server.pid, () => runDriver<TimedResult>('bytestream-download', { address, seed, sizeBytes }, timeoutMs));
  const seedOf = (kind: string, sizeBytes: number, chunkBytes: number, rep: number) => `${runId}-${kind}-${sizeBytes}-${chunkBytes}-${rep}`;

  // C1 and the small uploads of M1. Seeds differ per repetition: every upload is a new blob.
  const c1 = new Map<number, { mibPerS: number[]; rss: RssPhase[] }>(STREAM_CHUNK_SIZES.map((c) => [c, { mibPerS: [], rss: [] }]));
  const smallUploadRss: RssPhase[] = [];
  rows.push(
    ...(await rowsOrFailure(
      STREAM_CHUNK_SIZES.map((c) => ({ id: `C1-${chunkLabel(c)}`, what: `ByteStream upload of ${formatBytes(size)}`, unit: 'MiB/s', target: `>= ${STREAM_RATIO_TARGET} x raw stream` })),
      ctx.log,
      async () => {
        for (let rep = 0; rep < reps; rep++) {
          for (const chunkBytes of STREAM_CHUNK_SIZES) {
            ctx.log(`C1: upload ${formatBytes(size)} in ${formatBytes(chunkBytes)} messages, repetition ${rep + 1}/${reps}`);
            const { result, rss } = await upload(seedOf('c1', size, chunkBytes, rep), size, chunkBytes);
            c1.get(chunkBytes)!.mibPerS.push(size / MiB / result.seconds);
            c1.get(chunkBytes)!.rss.push(rss);
          }
          ctx.log(`M1: upload ${formatBytes(smallSize)}, repetition ${rep + 1}/${reps}`);
          smallUploadRss.push((await upload(seedOf('m1', smallSize, MiB, rep), smallSize, MiB)).rss);
        }
        return STREAM_CHUNK_SIZES.map((chunkBytes) =>
          row({
            id: `C1-${chunkLabel(chunkBytes)}`,
            what: `ByteStream upload of ${formatBytes(size)} random data in ${formatBytes(chunkBytes)} messages; hash verified, blob on disk`,
            unit: 'MiB/s',
            samples: c1.get(chunkBytes)!.mibPerS,
            baseline: ctx.baselines.get(BASELINE.upload(chunkBytes)),
            target: `>= ${STREAM_RATIO_TARGET} x raw stream`,
            meets: (_v, ratio) => ratio !== null && ratio >= STREAM_RATIO_TARGET,
            details: { sizeBytes: size, chunkBytes, serverRssGrowthMiB: c1.get(chunkBytes)!.rss.map((r) => toMiB(r.growthBytes)) },
          }),
        );
      },
    )),
  );

  // C2 downloads the blobs C1 uploaded in 1 MiB messages; M1 downloads the quarter-size ones too.
  const c2: number[] = [];
  const c2Rss: RssPhase[] = [];
  const smallDownloadRss: RssPhase[] = [];
  const c2Target = `>= ${STREAM_RATIO_TARGET} x raw stream`;
  rows.push(
    ...(await rowsOrFailure(
      [
        { id: 'C2', what: `ByteStream download of ${formatBytes(size)}`, unit: 'MiB/s', target: c2Target },
        { id: 'C2-rss', what: 'server RSS growth during C2', unit: 'MiB', target: `< ${C2_RSS_GROWTH_LIMIT_MIB} MiB` },
      ],
      ctx.log,
      async () => {
        for (let rep = 0; rep < reps; rep++) {
          ctx.log(`C2: download ${formatBytes(size)}, repetition ${rep + 1}/${reps}`);
          const { result, rss } = await download(seedOf('c1', size, MiB, rep), size);
          c2.push(size / MiB / result.seconds);
          c2Rss.push(rss);
          ctx.log(`M1: download ${formatBytes(smallSize)}, repetition ${rep + 1}/${reps}`);
          smallDownloadRss.push((await download(seedOf('m1', smallSize, MiB, rep), smallSize)).rss);
        }
        return [
          row({
            id: 'C2',
            what: `ByteStream download of ${formatBytes(size)} (server sends 1 MiB messages), every byte checked`,
            unit: 'MiB/s',
            samples: c2,
            baseline: ctx.baselines.get(BASELINE.download(MiB)),
            target: c2Target,
            meets: (_v, ratio) => ratio !== null && ratio >= STREAM_RATIO_TARGET,
            details: { sizeBytes: size },
          }),
          row({
            id: 'C2-rss',
            what: `server RSS growth (VmHWM - VmRSS at start) while downloading ${formatBytes(size)}, worst repetition`,
            unit: 'MiB',
            samples: [Math.max(...c2Rss.map((r) => toMiB(r.growthBytes)))],
            target: `< ${C2_RSS_GROWTH_LIMIT_MIB} MiB`,
            meets: (v) => v < C2_RSS_GROWTH_LIMIT_MIB,
            details: { perRepetitionMiB: c2Rss.map((r) => toMiB(r.growthBytes)) },
          }),
        ];
      },
    )),
  );

  rows.push(
    ...memoryRows(ctx, {
      idleRssBytes,
      size,
      smallSize,
      allUploads: [...c1.values()].flatMap((v) => v.rss),
      largeUploads: c1.get(MiB)!.rss,
      smallUploads: smallUploadRss,
      largeDownloads: c2Rss,
      smallDownloads: smallDownloadRss,
    }),
  );
  rows.push(...(await smallBlobRows(ctx, server, runId)));
  return rows;
}

/** Server memory over the transfers of C1, C2 and their quarter-size twins (1 MiB messages). */
interface MemoryPhases {
  idleRssBytes: number;
  size: number;
  smallSize: number;
  allUploads: RssPhase[];
  largeUploads: RssPhase[];
  smallUploads: RssPhase[];
  largeDownloads: RssPhase[];
  smallDownloads: RssPhase[];
}

/** M1: peaks during C1 and C2, and growth at the full size against a quarter of it. */
function memoryRows(ctx: BenchContext, m: MemoryPhases): BenchmarkRow[] {
  const { idleRssBytes, size, smallSize } = m;
  const rows: BenchmarkRow[] = [];
  const idleMiB = toMiB(idleRssBytes);
  const peak = (phases: RssPhase[]) => Math.max(...phases.map((p) => toMiB(p.peakBytes)));
  const growth = (phases: RssPhase[]) => median(phases.map((p) => toMiB(p.growthBytes)));
  if (m.allUploads.length) {
    rows.push(row({ id: 'M1-C1', what: `peak RSS of serve all during C1 (baseline: idle RSS before C1)`, unit: 'MiB', samples: [peak(m.allUploads)], baseline: idleMiB }));
  }
  if (m.largeDownloads.length) {
    rows.push(row({ id: 'M1-C2', what: `peak RSS of serve all during C2 (baseline: idle RSS before C1)`, unit: 'MiB', samples: [peak(m.largeDownloads)], baseline: idleMiB }));
  }
  const flat = (id: string, verb: string, large: RssPhase[], small: RssPhase[]) => {
    if (!large.length || large.length !== small.length) return;
    rows.push(
      row({
        id,
        what: `serve all RSS growth per ${verb} of ${formatBytes(size)} (baseline: of ${formatBytes(smallSize)})`,
        unit: 'MiB',
        samples: large.map((p) => toMiB(p.growthBytes)),
        baseline: Math.max(growth(small), 1),
        target: `flat: +< ${FLAT_TOLERANCE_MIB} MiB`,
        meets: (v) => v - growth(small) < FLAT_TOLERANCE_MIB,
        details: { smallSamplesMiB: small.map((p) => toMiB(p.growthBytes)) },
      }),
    );
  };
  flat('M1-flat-up', 'upload (1 MiB messages)', m.largeUploads, m.smallUploads);
  flat('M1-flat-down', 'download', m.largeDownloads, m.smallDownloads);
  ctx.log(`M1: idle RSS ${idleMiB.toFixed(0)} MiB`);
  return rows;
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

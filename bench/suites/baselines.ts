/**
 * The same-run baselines every other figure is divided by: what node:crypto, grpc-js, the disk and
 * process spawning achieve on this machine right now, with nothing of bzutil in the way.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { LatencyResult, TimedResult } from '../jobs/raw-jobs.js';
import { rawServerPath } from '../lib/paths.js';
import { runDriver, startListeningProcess } from '../lib/processes.js';
import { failedRow, row } from '../lib/rows.js';
import { MiB, formatBytes, percentile } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';

export const UNARY_IN_FLIGHT = 100;
const SPAWN_COUNT = 100;
const UNARY_LATENCY_CALLS = 1_000;

/** Baseline row ids other suites look up in `ctx.baselines`. */
export const BASELINE = {
  sha256: 'BASE-sha256',
  upload: (chunkBytes: number) => `BASE-up-${chunkLabel(chunkBytes)}`,
  download: (chunkBytes: number) => `BASE-down-${chunkLabel(chunkBytes)}`,
  unaryRate: 'BASE-unary-rate',
  unaryP50: 'BASE-unary-p50',
  diskWrite: 'BASE-disk-write',
  spawnP50: 'BASE-spawn-p50',
  spawnRate: 'BASE-spawn-rate',
} as const;

export const STREAM_CHUNK_SIZES = [16 * 1024, 1 * MiB] as const;

export function chunkLabel(chunkBytes: number): string {
  return chunkBytes >= MiB ? `${chunkBytes / MiB}m` : `${chunkBytes / 1024}k`;
}

/** Measures every baseline; failures become error rows and leave the dependent ratios empty. */
export async function runBaselines(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const reps = settings.repetitions;
  const rows: BenchmarkRow[] = [];
  const streamTimeoutMs = Math.max(60_000, (settings.streamBytes / (10 * MiB)) * 1000);

  const sha: number[] = [];
  const up = new Map<number, number[]>(STREAM_CHUNK_SIZES.map((c) => [c, []]));
  const down = new Map<number, number[]>(STREAM_CHUNK_SIZES.map((c) => [c, []]));
  const unaryRate: number[] = [];
  const unaryP50: number[] = [];
  const disk: number[] = [];
  const spawnP50: number[] = [];
  const spawnRate: number[] = [];
  const diskDir = join(ctx.tmpDir, 'disk-baseline');
  await mkdir(diskDir, { recursive: true });

  const raw = await startListeningProcess(rawServerPath, [], ['raw'], 30_000);
  try {
    const address = raw.addresses.raw!;
    // Repetitions are interleaved across variants so that a noisy moment hurts all of them alike.
    for (let rep = 0; rep < reps; rep++) {
      ctx.log(`baselines: repetition ${rep + 1}/${reps}`);
      const s = await runDriver<TimedResult>('sha256', { totalBytes: settings.sha256Bytes, seed: `sha-${rep}` }, streamTimeoutMs);
      sha.push(settings.sha256Bytes / MiB / s.seconds);
      for (const chunkBytes of STREAM_CHUNK_SIZES) {
        const u = await runDriver<TimedResult>('raw-upload', { address, totalBytes: settings.streamBytes, chunkBytes }, streamTimeoutMs);
        up.get(chunkBytes)!.push(settings.streamBytes / MiB / u.seconds);
        const d = await runDriver<TimedResult>('raw-download', { address, totalBytes: settings.streamBytes, chunkBytes }, streamTimeoutMs);
        down.get(chunkBytes)!.push(settings.streamBytes / MiB / d.seconds);
      }
      const r = await runDriver<TimedResult>('raw-unary-rate', { address, calls: settings.unaryCalls, inFlight: UNARY_IN_FLIGHT }, 120_000);
      unaryRate.push(settings.unaryCalls / r.seconds);
      const l = await runDriver<LatencyResult>('raw-unary-latency', { address, calls: UNARY_LATENCY_CALLS }, 120_000);
      unaryP50.push(percentile(l.latenciesMs, 50));
      const w = await runDriver<TimedResult>('disk-write', { dir: diskDir, totalBytes: settings.streamBytes, seed: `disk-${rep}` }, streamTimeoutMs);
      disk.push(settings.streamBytes / MiB / w.seconds);
      const sp = await runDriver<LatencyResult & TimedResult>('spawn-true', { count: SPAWN_COUNT, concurrency: 2 }, 120_000);
      spawnP50.push(percentile(sp.latenciesMs, 50));
      spawnRate.push(SPAWN_COUNT / sp.seconds);
    }
  } catch (err) {
    rows.push(failedRow('BASE', 'baselines', '-', 'reported', err));
    ctx.log(`baselines FAILED: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await raw.stop();
  }

  const size = formatBytes(settings.streamBytes);
  const add = (id: string, what: string, unit: string, samples: number[]) => {
    if (samples.length === reps) rows.push(row({ id, what, unit, samples }));
  };
  add(BASELINE.sha256, `SHA-256 (node:crypto) of ${formatBytes(settings.sha256Bytes)} in memory`, 'MiB/s', sha);
  for (const c of STREAM_CHUNK_SIZES) {
    add(BASELINE.upload(c), `raw grpc-js client stream, ${size} in ${formatBytes(c)} messages`, 'MiB/s', up.get(c)!);
    add(BASELINE.download(c), `raw grpc-js server stream, ${size} in ${formatBytes(c)} messages`, 'MiB/s', down.get(c)!);
  }
  add(BASELINE.unaryRate, `raw grpc-js no-op unary calls, ${UNARY_IN_FLIGHT} in flight, ${settings.unaryCalls} calls`, 'calls/s', unaryRate);
  add(BASELINE.unaryP50, `raw grpc-js no-op unary call, sequential, p50 of ${UNARY_LATENCY_CALLS}`, 'ms', unaryP50);
  add(BASELINE.diskWrite, `sequential write of ${size} in 1 MiB writes to the storage filesystem`, 'MiB/s', disk);
  add(BASELINE.spawnP50, `spawn and reap \`true\` from Node, p50 of ${SPAWN_COUNT} (2 at once)`, 'ms', spawnP50);
  add(BASELINE.spawnRate, `spawn and reap \`true\` from Node, 2 at once`, 'procs/s', spawnRate);
  return rows;
}

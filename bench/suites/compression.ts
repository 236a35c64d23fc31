/**
 * CZ: compressed blob transfer on source-like data, zstd (`--compress`) against plain, through one
 * `serve apiserver` on loopback: bytes on the wire and throughput of the uncompressed bytes moved.
 * H1: hashing throughput of BLAKE3 (hash-wasm) against node:crypto's SHA-256. Both are reported;
 * on loopback compression can only cost time, so CZ's throughput shows its price where the network
 * is free, and CZ-wire what it saves where it is not.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { CompressedTransferData, CompressedTransferResult, HashRateResult } from '../jobs/compression-jobs.js';
import { runDriver, transferTimeoutMs } from '../lib/processes.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { MiB, formatBytes, median } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';

export async function runCompressionBenchmarks(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const reps = ctx.settings.repetitions;
  const size = ctx.settings.mode === 'quick' ? 32 * MiB : 256 * MiB;
  const runId = randomUUID().slice(0, 8);
  const rows: BenchmarkRow[] = [];
  for (const data of ['source', 'random'] as const) rows.push(...(await compressedTransferRows(ctx, data, size, `${runId}-${data}`)));

  const hashBytes = ctx.settings.sha256Bytes;
  rows.push(
    ...(await rowsOrFailure([{ id: 'H1-blake3', what: 'BLAKE3 hashing', unit: 'MiB/s', target: 'reported' }], ctx.log, async () => {
      const samples = { sha256: [] as number[], blake3: [] as number[] };
      for (let rep = 0; rep < reps; rep++) {
        ctx.log(`H1: SHA-256 and BLAKE3 over ${formatBytes(hashBytes)}, repetition ${rep + 1}/${reps}`);
        const r = await runDriver<HashRateResult>('hash-rate', { sizeBytes: hashBytes, functions: rep % 2 ? ['blake3', 'sha256'] : ['sha256', 'blake3'] }, 10 * 60_000);
        samples.sha256.push(r.mibPerSecond.sha256!);
        samples.blake3.push(r.mibPerSecond.blake3!);
      }
      return [
        row({
          id: 'H1-blake3',
          what: `BLAKE3 (hash-wasm, WebAssembly) over ${formatBytes(hashBytes)} in memory, 1 MiB updates (baseline: node:crypto SHA-256, same bytes, same process)`,
          unit: 'MiB/s',
          samples: samples.blake3,
          baseline: median(samples.sha256),
          details: { sha256Samples: samples.sha256 },
        }),
      ];
    })),
  );
  return rows;
}

/**
 * CZ rows for one kind of data: `CZ-…` for source-like text, `CZ-rand-…` for incompressible bytes
 * (where zstd can only cost: the price of `--compress` on data that does not shrink).
 */
async function compressedTransferRows(ctx: BenchContext, data: CompressedTransferData, size: number, runId: string): Promise<BenchmarkRow[]> {
  const reps = ctx.settings.repetitions;
  const prefix = data === 'source' ? 'CZ' : 'CZ-rand';
  const label = data === 'source' ? 'source-like text' : 'incompressible bytes';
  const ids = ['wire-up', 'wire-down', 'up', 'down'].map((id) => ({ id: `${prefix}-${id}`, what: `compressed transfer of ${formatBytes(size)} of ${label}`, unit: 'MiB', target: 'reported' }));
  return rowsOrFailure(ids, ctx.log, async () => {
    const server = await ctx.startServe(
      ['apiserver', '--listen=127.0.0.1:0', `--storage_dir=${join(ctx.tmpDir, `cz-storage-${data}`)}`, '--max_size=64G', '--log_level=warn'],
      ['apiserver'],
    );
    const address = server.addresses.apiserver!;
    const results = { plain: [] as CompressedTransferResult[], zstd: [] as CompressedTransferResult[] };
    try {
      // Interleaved, each repetition a new blob (new seed), so that the CAS has never seen it.
      for (let rep = 0; rep < reps; rep++) {
        for (const compress of [false, true]) {
          ctx.log(`${prefix}: ${compress ? 'zstd' : 'plain'} upload and download of ${formatBytes(size)} ${label}, repetition ${rep + 1}/${reps}`);
          const seed = `${runId}-cz-${compress}-${rep}`;
          const r = await runDriver<CompressedTransferResult>('compressed-transfer', { address, seed, sizeBytes: size, compress, data }, 2 * transferTimeoutMs(size));
          (compress ? results.zstd : results.plain).push(r);
        }
      }
    } finally {
      await server.stop();
    }
    const wire = (rs: CompressedTransferResult[], dir: 'upload' | 'download') => rs.map((r) => (dir === 'upload' ? r.uploadWireBytes : r.downloadWireBytes) / MiB);
    const rate = (rs: CompressedTransferResult[], dir: 'upload' | 'download') => rs.map((r) => size / MiB / (dir === 'upload' ? r.uploadSeconds : r.downloadSeconds));
    const what = `${formatBytes(size)} of ${label} through CasClient on loopback (ByteStream, 1 MiB messages)`;
    return (['upload', 'download'] as const).flatMap((dir) => [
      row({
        id: `${prefix}-wire-${dir === 'upload' ? 'up' : 'down'}`,
        what: `${dir} ${what}: bytes on the wire with zstd (baseline: plain)`,
        unit: 'MiB',
        samples: wire(results.zstd, dir),
        baseline: median(wire(results.plain, dir)),
        details: { plainSamples: wire(results.plain, dir) },
      }),
      row({
        id: `${prefix}-${dir === 'upload' ? 'up' : 'down'}`,
        what: `${dir} ${what}: throughput of the plain bytes with zstd (baseline: plain)`,
        unit: 'MiB/s',
        samples: rate(results.zstd, dir),
        baseline: median(rate(results.plain, dir)),
        details: { plainSamples: rate(results.plain, dir) },
      }),
    ]);
  });
}

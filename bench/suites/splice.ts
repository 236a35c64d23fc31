/**
 * SP: split/splice. A blob (256 MiB; 64 MiB in quick mode) of random bytes is uploaded to one
 * `serve apiserver` on loopback, then re-uploaded with 1 MiB in the middle changed. The row is the
 * bytes the re-upload put on the wire, against the blob's size (what a plain upload sends): only
 * the chunks around the change travel, with FindMissingBlobs and SpliceBlob for the chunk list.
 */
import { join } from 'node:path';
import { SPLICE_CHANGE_BYTES, type SpliceReuploadResult } from '../jobs/splice-jobs.js';
import { runDriver, transferTimeoutMs } from '../lib/processes.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { MiB, formatBytes } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';

export async function runSpliceBenchmarks(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const reps = ctx.settings.repetitions;
  const size = ctx.settings.mode === 'quick' ? 64 * MiB : 256 * MiB;
  const what = `re-upload of a ${formatBytes(size)} random blob with ${formatBytes(SPLICE_CHANGE_BYTES)} in the middle changed, split/splice (FastCDC, 512 KiB average chunks) through CasClient on loopback`;
  const ids = [
    { id: 'SP-wire', what, unit: 'MiB', target: 'reported' },
    { id: 'SP-time', what, unit: 's', target: 'reported' },
  ];
  return rowsOrFailure(ids, ctx.log, async () => {
    const server = await ctx.startServe(
      ['apiserver', '--listen=127.0.0.1:0', `--storage_dir=${join(ctx.tmpDir, 'sp-storage')}`, '--max_size=64G', '--log_level=warn'],
      ['apiserver'],
    );
    const address = server.addresses.apiserver!;
    const results: SpliceReuploadResult[] = [];
    for (let rep = 0; rep < reps; rep++) {
      ctx.log(`SP: upload and changed re-upload of ${formatBytes(size)}, repetition ${rep + 1}/${reps}`);
      results.push(await runDriver<SpliceReuploadResult>('splice-reupload', { address, sizeBytes: size, changeBytes: SPLICE_CHANGE_BYTES }, 4 * transferTimeoutMs(size)));
    }
    return [
      row({
        id: 'SP-wire',
        what: `${what}: bytes on the wire (baseline: the blob's size, what a plain upload sends)`,
        unit: 'MiB',
        samples: results.map((r) => r.reuploadWireBytes / MiB),
        baseline: size / MiB,
        details: { chunkBytesSent: results.map((r) => r.reuploadChunkBytes / MiB), firstUploadWireMiB: results.map((r) => r.firstWireBytes / MiB) },
      }),
      row({
        id: 'SP-time',
        what: `${what}: wall time of the re-upload (chunking and hashing ${formatBytes(size)} locally included)`,
        unit: 's',
        samples: results.map((r) => r.reuploadSeconds),
      }),
    ];
  });
}

import { describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { BATCH_ENTRY_OVERHEAD_BYTES, fitsInBatch, matchAnswered, planBatches } from '../../../src/lib/client/blob-batches.js';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('blob-batches', () => {
  it('sends a blob in a batch only under both the ByteStream threshold and the batch limit', () => {
    const d = Digest.ofBytes(bytes('x'.repeat(1000)));
    expect(fitsInBatch(d, 1000, 1000 + BATCH_ENTRY_OVERHEAD_BYTES)).toBe(true);
    expect(fitsInBatch(d, 999, 10_000)).toBe(false);
    expect(fitsInBatch(d, 1000, 1000 + BATCH_ENTRY_OVERHEAD_BYTES - 1)).toBe(false);
  });

  it('never mixes instance names or digest functions in one batch, and keeps each batch under the limit', () => {
    const a1 = Digest.ofBytes(bytes('a'.repeat(300)), { instanceName: 'a' });
    const a2 = Digest.ofBytes(bytes('b'.repeat(300)), { instanceName: 'a' });
    const b1 = Digest.ofBytes(bytes('c'.repeat(300)), { instanceName: 'b' });
    const sha1 = Digest.ofBytes(bytes('d'.repeat(300)), { instanceName: 'a', digestFunction: 'sha1' });
    const limit = 2 * (300 + BATCH_ENTRY_OVERHEAD_BYTES);
    const batches = planBatches([a1, b1, a2, sha1], (d) => d, limit);
    expect(batches).toEqual([[a1, a2], [b1], [sha1]]);
    const tight = planBatches([a1, a2], (d) => d, limit - 1);
    expect(tight).toEqual([[a1], [a2]]);
  });

  it('matches a FindMissing answer in order, out of order, and ignores digests never asked about', () => {
    const [x, y, z] = ['x', 'y', 'z'].map((t) => Digest.ofBytes(bytes(t)));
    const asProto = (d: Digest) => ({ hash: d.hash, sizeBytes: d.sizeBytes });
    expect(matchAnswered([x!, y!, z!], [asProto(x!), asProto(z!)])).toEqual([x, z]);
    expect(matchAnswered([x!, y!, z!], [asProto(z!), asProto(x!)])).toEqual([z, x]);
    const stranger = Digest.ofBytes(bytes('stranger'));
    expect(matchAnswered([x!], [asProto(stranger)])).toEqual([]);
  });
});

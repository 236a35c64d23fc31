import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chunkBytes, chunkStream, FastCdcChunker, gearTable, validateFastCdcParams } from '../../../src/lib/cas/fastcdc.js';

/** Deterministic pseudo-random bytes (SHA-256 in counter mode), so every run cuts the same chunks. */
function randomBytes(n: number, seed = 'fastcdc'): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0, block = 0; i < n; block++) {
    const d = createHash('sha256').update(`${seed}/${block}`).digest();
    out.set(d.subarray(0, Math.min(32, n - i)), i);
    i += 32;
  }
  return out;
}

const sizes = (chunks: Uint8Array[]) => chunks.map((c) => c.length);
const hashes = (chunks: Uint8Array[]) => chunks.map((c) => createHash('sha256').update(c).digest('hex'));

describe('FastCDC', () => {
  const params = { avgChunkSizeBytes: 8192 };

  it('cuts chunks between min (avg/4) and max (avg*4) that concatenate to the input', () => {
    const data = randomBytes(1_000_000);
    const chunks = chunkBytes(data, params);
    expect(Buffer.concat(chunks).equals(Buffer.from(data))).toBe(true);
    for (const c of chunks.slice(0, -1)) {
      expect(c.length).toBeGreaterThanOrEqual(2048);
      expect(c.length).toBeLessThanOrEqual(32768);
    }
    // Normalized chunking keeps the mean near the average.
    const mean = data.length / chunks.length;
    expect(mean).toBeGreaterThan(8192 * 0.6);
    expect(mean).toBeLessThan(8192 * 1.6);
  });

  it('is pinned: the same bytes and parameters always give the same chunks', () => {
    // Regression vector: a change here changes every chunk digest a server or client produced.
    const chunks = chunkBytes(randomBytes(100_000), params);
    expect(sizes(chunks)).toMatchInlineSnapshot(`
      [
        8091,
        8719,
        8320,
        12126,
        9407,
        9052,
        8918,
        9420,
        9009,
        2698,
        7745,
        6495,
      ]
    `);
    expect(gearTable(0)[0]).toMatchInlineSnapshot(`198381525`);
  });

  it('cuts a stream exactly as the whole buffer, whatever the piece sizes', async () => {
    const data = randomBytes(400_000, 'stream');
    const whole = sizes(chunkBytes(data, params));
    for (const pieceSize of [1, 1000, 4096, 65_536, 400_000]) {
      // Every piece size in one run would be slow at 1 byte: take a prefix for the tiny pieces.
      const input = pieceSize === 1 ? data.subarray(0, 50_000) : data;
      const expected = pieceSize === 1 ? sizes(chunkBytes(input, params)) : whole;
      async function* pieces() {
        for (let i = 0; i < input.length; i += pieceSize) yield input.slice(i, i + pieceSize);
      }
      const got: Uint8Array[] = [];
      for await (const c of chunkStream(pieces(), params)) got.push(c);
      expect(sizes(got), `pieces of ${pieceSize}`).toEqual(expected);
    }
  });

  it('keeps chunks away from a change: a 1-byte edit and an insertion touch one or two chunks', () => {
    const data = randomBytes(2_000_000, 'edit');
    const before = new Set(hashes(chunkBytes(data, params)));
    const edited = Buffer.from(data);
    edited[1_000_000] = edited[1_000_000]! ^ 0xff;
    const afterEdit = hashes(chunkBytes(edited, params));
    expect(afterEdit.filter((h) => !before.has(h)).length).toBeLessThanOrEqual(2);

    const inserted = Buffer.concat([data.subarray(0, 700_000), Buffer.from('inserted bytes shift everything after them'), data.subarray(700_000)]);
    const afterInsert = hashes(chunkBytes(inserted, params));
    expect(afterInsert.filter((h) => !before.has(h)).length).toBeLessThanOrEqual(2);
  });

  it('cuts at max on input with no cut points (all zeros) and keeps a short tail', () => {
    const chunks = chunkBytes(new Uint8Array(100_000), params);
    expect(sizes(chunks)).toEqual([32768, 32768, 32768, 100_000 - 3 * 32768]);
  });

  it('gives no chunk for an empty stream and one chunk for input below the minimum', () => {
    expect(chunkBytes(new Uint8Array(0), params)).toEqual([]);
    expect(sizes(chunkBytes(new Uint8Array(100), params))).toEqual([100]);
    const c = new FastCdcChunker(params);
    expect(c.push(new Uint8Array(0))).toEqual([]);
    expect(c.finish()).toEqual([]);
  });

  it('cuts differently with another seed', () => {
    const data = randomBytes(300_000, 'seed');
    expect(sizes(chunkBytes(data, { ...params, seed: 1 }))).not.toEqual(sizes(chunkBytes(data, params)));
  });

  it('refuses averages that are not a power of two from 1 KiB to 1 MiB, and bad seeds', () => {
    for (const avg of [0, 512, 1000, 3 * 1024, 2 * 1024 * 1024, 1.5]) {
      expect(() => validateFastCdcParams({ avgChunkSizeBytes: avg }), String(avg)).toThrow(TypeError);
    }
    expect(() => validateFastCdcParams({ avgChunkSizeBytes: 1024, seed: -1 })).toThrow(TypeError);
    expect(() => validateFastCdcParams({ avgChunkSizeBytes: 1024 * 1024, seed: 0xffffffff })).not.toThrow();
  });
});

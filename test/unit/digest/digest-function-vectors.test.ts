/**
 * Every digest function against published test vectors (FIPS 180 for the SHA family, RFC 1321 for
 * MD5, the BLAKE3 reference for BLAKE3), one-shot and streamed, and BLAKE3 hashes interleaved the way
 * concurrent uploads interleave them (they share one WebAssembly instance).
 */
import { describe, expect, it } from 'vitest';
import { DIGEST_FUNCTIONS, type DigestFunction, hashBytes, hashStream, newHasher } from '../../../src/lib/digest/digest-function.js';
import { Digest } from '../../../src/lib/digest/digest.js';

const ABC = new TextEncoder().encode('abc');
/** FIPS 180-2 / RFC 1321 / BLAKE3 reference hashes of "abc" and of no bytes. */
const VECTORS: Record<DigestFunction, { abc: string; empty: string }> = {
  sha256: {
    abc: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    empty: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  },
  sha1: { abc: 'a9993e364706816aba3e25717850c26c9cd0d89d', empty: 'da39a3ee5e6b4b0d3255bfef95601890afd80709' },
  md5: { abc: '900150983cd24fb0d6963f7d28e17f72', empty: 'd41d8cd98f00b204e9800998ecf8427e' },
  sha384: {
    abc: 'cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7',
    empty: '38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b',
  },
  sha512: {
    abc: 'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
    empty: 'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e',
  },
  blake3: {
    abc: '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85',
    empty: 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262',
  },
};

async function* pieces(data: Uint8Array, sizes: number[]): AsyncGenerator<Uint8Array> {
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield data.subarray(at, at + n);
    at += n;
  }
}

describe('digest functions', () => {
  it('cover all six, SHA-256 first', () => {
    expect(DIGEST_FUNCTIONS).toEqual(['sha256', 'sha1', 'md5', 'sha384', 'sha512', 'blake3']);
  });

  it.each(DIGEST_FUNCTIONS)('%s matches its published vectors, one-shot, incrementally and streamed', async (fn) => {
    expect(hashBytes(fn, ABC)).toBe(VECTORS[fn].abc);
    expect(hashBytes(fn, new Uint8Array(0))).toBe(VECTORS[fn].empty);
    expect(newHasher(fn).update(ABC.subarray(0, 1)).update(ABC.subarray(1)).digest('hex')).toBe(VECTORS[fn].abc);
    expect(await hashStream(fn, pieces(ABC, [2, 1]))).toEqual({ hash: VECTORS[fn].abc, sizeBytes: 3 });
    const empty = Digest.empty({ digestFunction: fn });
    expect([empty.hash, empty.isEmpty]).toEqual([VECTORS[fn].empty, true]);
  });

  it('keeps interleaved BLAKE3 hashes apart', async () => {
    // Large, multi-chunk inputs (BLAKE3 chunks are 1 KiB), updated alternately in uneven pieces.
    const a = new Uint8Array(300_000).map((_, i) => i % 251);
    const b = new Uint8Array(200_000).map((_, i) => (i * 7) % 253);
    const expectedA = hashBytes('blake3', a);
    const expectedB = hashBytes('blake3', b);
    expect(expectedA).not.toBe(expectedB);
    const ha = newHasher('blake3');
    const hb = newHasher('blake3');
    for (let i = 0, j = 0; i < a.length || j < b.length; i += 4099, j += 1531) {
      if (i < a.length) ha.update(a.subarray(i, i + 4099));
      if (j < b.length) hb.update(b.subarray(j, j + 1531));
      // A third hash started and finished in between must not disturb either.
      if (i % 10 === 0) expect(hashBytes('blake3', ABC)).toBe(VECTORS.blake3.abc);
    }
    expect(hb.digest('hex')).toBe(expectedB);
    expect(ha.digest('hex')).toBe(expectedA);
    // Concurrent streams too.
    const [sa, sb] = await Promise.all([hashStream('blake3', pieces(a, [777, 65536])), hashStream('blake3', pieces(b, [1000]))]);
    expect([sa.hash, sb.hash]).toEqual([expectedA, expectedB]);
  });
});

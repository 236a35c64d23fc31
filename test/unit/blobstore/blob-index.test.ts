import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BlobIndex } from '../../../src/lib/blobstore/blob-index.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import type { DigestFunction } from '../../../src/lib/digest/digest-function.js';

const HEX_DIGITS: Record<DigestFunction, number> = { sha256: 64, sha1: 40, md5: 32, sha384: 96, sha512: 128, blake3: 64 };

/** A digest whose hash is derived from `seed` (not the hash of any content: the index does not care). */
function digest(seed: string | number, sizeBytes = 10, opts: { fn?: DigestFunction; instanceName?: string } = {}): Digest {
  const fn = opts.fn ?? 'sha256';
  const hex = createHash('sha512').update(String(seed)).digest('hex').slice(0, HEX_DIGITS[fn]);
  return Digest.create(opts.instanceName ?? '', fn, hex, sizeBytes);
}

const order = (index: BlobIndex) => [...index.oldestFirst()].map(([d, size, foreign]) => `${d.instanceName}|${d.digestFunction}|${d.toString()}|${size}|${foreign}`);
const describeDigest = (d: Digest, size: number, foreign: boolean) => `${d.instanceName}|${d.digestFunction}|${d.toString()}|${size}|${foreign}`;

describe('BlobIndex', () => {
  it('orders blobs by last use, oldest first; peek leaves the order alone', () => {
    const index = new BlobIndex();
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((s) => digest(s));
    for (const x of [a!, b!, c!, d!]) index.own(x, 10);
    expect(index.touch(b!)).toBe(10);
    expect(index.touch(a!)).toBe(10);
    expect(index.peek(c!)).toBe(10);
    expect(index.touch(digest('absent'))).toBeUndefined();
    expect(order(index)).toEqual([c, d, b, a].map((x) => describeDigest(x!, 10, false)));
  });

  it('tells digests apart by size, digest function and instance name, and keeps long hashes whole', () => {
    const index = new BlobIndex();
    const sha256 = digest('x', 5);
    const blake3 = Digest.create('', 'blake3', sha256.hash, 5);
    const otherSize = digest('x', 6);
    const otherInstance = digest('x', 5, { instanceName: 'team/a' });
    const sha512 = digest('long', 7, { fn: 'sha512' });
    // Same first 64 hex digits, different tails: only the tail tells them apart.
    const sha512Twin = Digest.create('', 'sha512', sha512.hash.slice(0, 64) + 'f'.repeat(64), 7);
    const sha384 = digest('mid', 2 ** 40 + 3, { fn: 'sha384' });
    index.own(sha256, 1);
    expect(index.has(blake3)).toBe(false);
    expect(index.has(otherSize)).toBe(false);
    expect(index.has(otherInstance)).toBe(false);
    index.own(sha512, 7);
    expect(index.has(sha512Twin)).toBe(false);
    index.own(sha512Twin, 8);
    index.own(sha384, 2 ** 40 + 3);
    index.addForeign(otherInstance, 9);
    expect(index.peek(sha512)).toBe(7);
    expect(index.peek(sha512Twin)).toBe(8);
    expect(index.peek(sha384)).toBe(2 ** 40 + 3);
    expect(index.peek(otherInstance)).toBe(9);
    expect(index.isOwned(otherInstance)).toBe(false);
    expect(index.ownedCount).toBe(4);
    expect(index.ownedBytes).toBe(1 + 7 + 8 + 2 ** 40 + 3);
    // Iteration rebuilds each digest exactly, function, instance and all.
    const listed = [...index.oldestFirst()].map(([d]) => d);
    expect(listed.map((d) => d.key)).toEqual([sha256, sha512, sha512Twin, sha384, otherInstance].map((d) => d.key));
  });

  it('accounts owned and foreign blobs as they change hands, size and owner', () => {
    const index = new BlobIndex();
    const a = digest('a');
    const b = digest('b');
    index.own(a, 100);
    index.own(a, 120); // rewritten with another stored size
    expect([index.ownedCount, index.ownedBytes]).toEqual([1, 120]);
    index.addForeign(a, 120); // another process took it over
    expect([index.ownedCount, index.ownedBytes, index.isOwned(a), index.touchOwned(a)]).toEqual([0, 0, false, false]);
    index.addForeign(b, 50);
    expect(index.resize(b, 55)).toBe(55);
    expect([index.isOwned(b), index.peek(b)]).toEqual([false, 55]);
    index.own(b, 55);
    expect([index.ownedCount, index.ownedBytes, index.touchOwned(b)]).toEqual([1, 55, true]);
    expect(index.forget(a)).toBeUndefined(); // foreign: no owned size to give back
    expect(index.forget(b)).toBe(55);
    expect(index.forget(b)).toBeUndefined();
    expect([index.ownedCount, index.ownedBytes, index.size]).toEqual([0, 0, 0]);
  });

  it('lets the caller forget the current entry while iterating, as eviction does', () => {
    const index = new BlobIndex();
    const ds = Array.from({ length: 10 }, (_, i) => digest(i));
    ds.forEach((d, i) => index.own(d, i + 1));
    let freed = 0;
    for (const [d, size] of index.oldestFirst()) {
      if (freed >= 10) break;
      freed += index.forget(d) ?? 0;
      expect(size).toBeGreaterThan(0);
    }
    expect(freed).toBe(1 + 2 + 3 + 4); // the four oldest
    expect(order(index)).toEqual(ds.slice(4).map((d, i) => describeDigest(d, i + 5, false)));
  });

  it('agrees with a plain model through 30k random operations, across growth and reuse of freed records', () => {
    // The model: a Map in recency order (delete + set moves a key to the newest end).
    const model = new Map<string, { digest: Digest; size: number; foreign: boolean }>();
    const index = new BlobIndex();
    let seed = 12345;
    const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    const fns: DigestFunction[] = ['sha256', 'sha256', 'sha256', 'md5', 'sha1', 'sha512'];
    const pool = Array.from({ length: 3000 }, (_, i) => digest(i, rand(4) === 0 ? 2 ** 33 + i : i, { fn: fns[i % fns.length]!, instanceName: i % 7 === 0 ? 'ci' : '' }));
    const touch = (d: Digest) => {
      const entry = model.get(d.key);
      if (entry) {
        model.delete(d.key);
        model.set(d.key, entry);
      }
      return entry;
    };
    for (let step = 0; step < 30_000; step++) {
      const d = pool[rand(pool.length)]!;
      switch (rand(6)) {
        case 0:
        case 1: {
          const size = rand(1000);
          const foreign = step % 2 === 1;
          touch(d);
          model.set(d.key, { digest: d, size, foreign });
          if (foreign) index.addForeign(d, size);
          else index.own(d, size);
          break;
        }
        case 2:
          expect(index.touch(d)).toBe(touch(d)?.size);
          break;
        case 3:
          expect(index.peek(d)).toBe(model.get(d.key)?.size);
          break;
        case 4: {
          const entry = model.get(d.key);
          model.delete(d.key);
          expect(index.forget(d)).toBe(entry && !entry.foreign ? entry.size : undefined);
          break;
        }
        default: {
          const entry = touch(d);
          expect(index.touchOwned(d)).toBe(entry !== undefined && !entry.foreign);
        }
      }
      if (step % 5000 === 4999 || step === 29_999) {
        const owned = [...model.values()].filter((e) => !e.foreign);
        expect([index.size, index.ownedCount, index.ownedBytes]).toEqual([model.size, owned.length, owned.reduce((n, e) => n + e.size, 0)]);
        expect(order(index)).toEqual([...model.values()].map((e) => describeDigest(e.digest, e.size, e.foreign)));
      }
    }
  });

  it('holds 200k blobs in typed arrays and finds each of them', () => {
    const index = new BlobIndex();
    const ds = Array.from({ length: 200_000 }, (_, i) => digest(i, i));
    ds.forEach((d, i) => index.own(d, i));
    expect(index.size).toBe(200_000);
    for (let i = 0; i < ds.length; i += 997) expect(index.peek(ds[i]!)).toBe(i);
    expect(index.has(digest('not there'))).toBe(false);
  });
});

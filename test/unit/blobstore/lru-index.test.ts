import { describe, expect, it } from 'vitest';
import { LruIndex, digestKeyScheme } from '../../../src/lib/blobstore/lru-index.js';
import { Digest } from '../../../src/lib/digest/digest.js';

/** Digests whose hashes share their first 57 hex digits. */
const colliding = (tail: string, sizeBytes = 1, instanceName = '') => Digest.create(instanceName, 'sha256', 'abcdef0' + tail.padStart(57, '0'), sizeBytes);

const keys = (index: LruIndex<number>) => [...index.oldestFirst()].map(([k]) => k);

describe('LruIndex', () => {
  it('orders entries by last use, oldest first', () => {
    const index = new LruIndex<number>();
    for (const k of ['a', 'b', 'c', 'd']) index.set(k, 1);
    expect(index.touch('b')).toBe(1);
    expect(index.touch('a')).toBe(1);
    expect(index.touch('missing')).toBeUndefined();
    expect(keys(index)).toEqual(['c', 'd', 'b', 'a']);
  });

  it('does not change order on peek', () => {
    const index = new LruIndex<number>();
    index.set('a', 1);
    index.set('b', 2);
    expect(index.peek('a')).toBe(1);
    expect(keys(index)).toEqual(['a', 'b']);
  });

  it('replaces a value, returning the old one and making the entry newest', () => {
    const index = new LruIndex<number>();
    index.set('a', 1);
    index.set('b', 2);
    expect(index.set('a', 10)).toBe(1);
    expect(keys(index)).toEqual(['b', 'a']);
    expect(index.size).toBe(2);
  });

  it('deletes entries at either end or in the middle, also while iterating', () => {
    const index = new LruIndex<number>();
    for (const k of ['a', 'b', 'c', 'd', 'e']) index.set(k, 1);
    expect(index.delete('c')).toBe(1);
    expect(index.delete('a')).toBe(1);
    expect(index.delete('e')).toBe(1);
    expect(index.delete('zz')).toBeUndefined();
    expect(keys(index)).toEqual(['b', 'd']);
    for (const [k] of index.oldestFirst()) index.delete(k);
    expect(index.size).toBe(0);
    expect(keys(index)).toEqual([]);
    index.set('f', 1);
    expect(keys(index)).toEqual(['f']);
    expect(index.has('f')).toBe(true);
  });

  it('keys digests by value, telling apart digests that share a bucket', () => {
    // Every digest in one bucket, to exercise the chains.
    const index = new LruIndex<string, Digest>({ bucketOf: () => 0, equals: digestKeyScheme.equals });
    const a = colliding('1');
    const b = colliding('2');
    const bBigger = colliding('2', 2);
    const bElsewhere = colliding('2', 1, 'other');
    for (const [d, v] of [[a, 'a'], [b, 'b'], [bBigger, 'b2'], [bElsewhere, 'b3']] as const) expect(index.set(d, v)).toBeUndefined();
    expect(index.size).toBe(4);
    // An equal but distinct Digest value finds the entry.
    expect(index.touch(colliding('1'))).toBe('a');
    expect(index.peek(colliding('2', 2))).toBe('b2');
    expect(index.peek(colliding('3'))).toBeUndefined();
    expect([...index.oldestFirst()].map(([, v]) => v)).toEqual(['b', 'b2', 'b3', 'a']);
    // Removing from the middle of a bucket's chain keeps its neighbours.
    expect(index.delete(colliding('2', 2))).toBe('b2');
    expect(index.delete(colliding('2', 2))).toBeUndefined();
    expect([b, bElsewhere, a].map((d) => index.peek(d))).toEqual(['b', 'b3', 'a']);
    expect(index.set(colliding('2', 1, 'other'), 'b3 again')).toBe('b3');
    expect([...index.oldestFirst()].map(([, v]) => v)).toEqual(['b', 'a', 'b3 again']);
    for (const [d] of index.oldestFirst()) index.delete(d);
    expect(index.size).toBe(0);
    expect(index.has(a)).toBe(false);
  });

  it('files equal digests in one bucket and spreads digests a client could craft alike', () => {
    const bucket = (d: Digest) => digestKeyScheme.bucketOf(d);
    expect(bucket(colliding('1', 5, 'x'))).toBe(bucket(colliding('1', 5, 'x')));
    // Same first 57 hex digits; same hash with other sizes; same hash in other instances.
    const families = [
      Array.from({ length: 1000 }, (_, i) => colliding(i.toString(16))),
      Array.from({ length: 1000 }, (_, i) => colliding('1', i + 1)),
      Array.from({ length: 1000 }, (_, i) => colliding('1', 1, `instance-${i}`)),
    ];
    for (const family of families) expect(new Set(family.map(bucket)).size).toBeGreaterThan(990);
  });
});

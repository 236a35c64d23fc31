import { describe, expect, it } from 'vitest';
import { LruIndex } from '../../../src/lib/blobstore/lru-index.js';

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
});

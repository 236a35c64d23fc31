import { describe, expect, it } from 'vitest';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { bytes, chunksOf, describeBlobStoreContract, expectCode, rejectionOf } from '../../helpers/blob-store-contract.js';

describeBlobStoreContract('MemoryBlobStore', async () => ({ store: new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 }) }));

describe('MemoryBlobStore', () => {
  const blob = (text: string) => ({ data: bytes(text), digest: Digest.ofBytes(bytes(text)) });

  it('evicts the least recently used blob when over its byte budget', async () => {
    const store = new MemoryBlobStore({ maxSizeBytes: 30 });
    const [a, b, c] = [blob('a'.repeat(10)), blob('b'.repeat(10)), blob('c'.repeat(10))];
    await store.put(a.digest, a.data);
    await store.put(b.digest, b.data);
    await store.put(c.digest, c.data);
    // Reading `a` makes `b` the least recently used.
    await store.get(a.digest);
    const d = blob('d'.repeat(10));
    await store.put(d.digest, d.data);
    expect(await store.findMissing([a.digest, b.digest, c.digest, d.digest])).toEqual([b.digest]);
    expect(store.sizeBytes).toBe(30);
    expect(store.blobCount).toBe(3);
  });

  it('counts a blob put twice once', async () => {
    const store = new MemoryBlobStore({ maxSizeBytes: 100 });
    const a = blob('same');
    await store.put(a.digest, a.data);
    await store.put(a.digest, chunksOf(a.data));
    expect(store.sizeBytes).toBe(4);
  });

  it('refuses a blob larger than its whole budget with RESOURCE_EXHAUSTED', async () => {
    const store = new MemoryBlobStore({ maxSizeBytes: 8 });
    const big = blob('more than eight bytes');
    expectCode(await rejectionOf(store.put(big.digest, big.data)), Code.RESOURCE_EXHAUSTED);
    expectCode(await rejectionOf(store.put(big.digest, chunksOf(big.data.subarray(0, 5), big.data.subarray(5)))), Code.RESOURCE_EXHAUSTED);
    expect(store.sizeBytes).toBe(0);
  });

  it('refuses get of a blob above maxBytes with RESOURCE_EXHAUSTED', async () => {
    const store = new MemoryBlobStore({ maxSizeBytes: 100 });
    const a = blob('0123456789');
    await store.put(a.digest, a.data);
    expectCode(await rejectionOf(store.get(a.digest, { maxBytes: 9 })), Code.RESOURCE_EXHAUSTED);
    expect(await store.get(a.digest, { maxBytes: 10 })).toHaveLength(10);
  });
});

import { describe, expect, it } from 'vitest';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { SmallBlobCachingBlobStore } from '../../../src/lib/blobstore/small-blob-caching-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { bytes, chunksOf, collect, describeBlobStoreContract, expectCode, patternBytes, RecordingBlobStore, rejectionOf } from '../../helpers/blob-store-contract.js';

describeBlobStoreContract('SmallBlobCachingBlobStore over a MemoryBlobStore', async () => ({
  store: new SmallBlobCachingBlobStore(new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 }), { maxSizeBytes: 1024 * 1024, maxBlobSizeBytes: 64 * 1024 }),
}));

describe('SmallBlobCachingBlobStore', () => {
  const blob = (data: Uint8Array) => ({ data, digest: Digest.ofBytes(data) });
  const setup = (opts = { maxSizeBytes: 64 * 1024, maxBlobSizeBytes: 16 * 1024 }) => {
    const memory = new MemoryBlobStore({ maxSizeBytes: 16 * 1024 * 1024 });
    const base = new RecordingBlobStore(memory);
    return { memory, base, store: new SmallBlobCachingBlobStore(base, opts) };
  };

  it('serves a small blob it wrote from memory, without asking the base again', async () => {
    const { base, store } = setup();
    const a = blob(bytes('small and hot'));
    await store.put(a.digest, a.data);
    base.take();

    expect(Buffer.from(await store.get(a.digest)).toString()).toBe('small and hot');
    expect(Buffer.from(await collect(store.read(a.digest, { offset: 6, limit: 3 }))).toString()).toBe('and');
    expect(base.take()).toEqual([]);
  });

  it('fills memory on the first read from the base, then serves from memory', async () => {
    const { memory, base, store } = setup();
    const a = blob(patternBytes(5_000, 3));
    await memory.put(a.digest, a.data);

    expect(Buffer.from(await collect(store.read(a.digest))).equals(a.data)).toBe(true);
    expect(base.take().map((c) => c.verb)).toEqual(['get']);
    expect(Buffer.from(await store.get(a.digest)).equals(a.data)).toBe(true);
    expect(base.take()).toEqual([]);
    expect(store.cachedBlobCount).toBe(1);
  });

  it('streams blobs larger than maxBlobSizeBytes from the base and never keeps them', async () => {
    const { base, store } = setup();
    const big = blob(patternBytes(20_000, 4));
    await store.put(big.digest, big.data);
    expect(store.cachedBlobCount).toBe(0);
    base.take();

    expect(Buffer.from(await collect(store.read(big.digest))).equals(big.data)).toBe(true);
    expect(Buffer.from(await store.get(big.digest)).equals(big.data)).toBe(true);
    expect(base.take().map((c) => c.verb)).toEqual(['read', 'get']);
    expect(store.cachedBlobCount).toBe(0);
  });

  it('does not cache streamed writes, and answers findMissing from the base alone', async () => {
    const { memory, base, store } = setup();
    const a = blob(bytes('streamed'));
    await store.put(a.digest, chunksOf(bytes('stream'), bytes('ed')));
    expect(store.cachedBlobCount).toBe(0);
    expect(await memory.findMissing([a.digest])).toEqual([]);
    base.take();
    expect(await store.findMissing([a.digest])).toEqual([]);
    expect(base.take().map((c) => c.verb)).toEqual(['findMissing']);
  });

  it('evicts the least recently used blobs beyond maxSizeBytes', async () => {
    const { base, store } = setup({ maxSizeBytes: 10_000, maxBlobSizeBytes: 4_000 });
    const blobs = [1, 2, 3].map((seed) => blob(patternBytes(4_000, seed)));
    for (const b of blobs) await store.put(b.digest, b.data);
    base.take();

    // Only two fit: the oldest one comes from the base again.
    expect(store.cachedBlobCount).toBe(2);
    await store.get(blobs[0]!.digest);
    expect(base.take().map((c) => c.verb)).toEqual(['get']);
  });

  it('replaces the cached value when a key is rewritten (action cache)', async () => {
    const { store } = setup();
    const actionDigest = Digest.ofBytes(bytes('an action'));
    await store.put(actionDigest, bytes('first result'));
    expect(Buffer.from(await store.get(actionDigest)).toString()).toBe('first result');

    await store.put(actionDigest, bytes('second result'));
    expect(Buffer.from(await store.get(actionDigest)).toString()).toBe('second result');

    // A rewrite too large to cache must not leave the old value behind either.
    await store.put(actionDigest, patternBytes(20_000, 9));
    expect((await store.get(actionDigest)).length).toBe(20_000);
  });

  it('does not cache what a read returned if a write of the same key finished meanwhile', async () => {
    const memory = new MemoryBlobStore({ maxSizeBytes: 1024 * 1024 });
    const actionDigest = Digest.ofBytes(bytes('an action'));
    await memory.put(actionDigest, bytes('old result'));
    let releaseRead!: () => void;
    const readGate = new Promise<void>((resolve) => (releaseRead = resolve));
    // A base whose get returns the old bytes only after the new ones were written.
    const slowBase = new (class extends RecordingBlobStore {
      override async get(digest: Digest): Promise<Uint8Array> {
        const data = await memory.get(digest);
        await readGate;
        return data;
      }
    })(memory);
    const store = new SmallBlobCachingBlobStore(slowBase, { maxSizeBytes: 64 * 1024 });

    const staleRead = store.get(actionDigest);
    await store.put(actionDigest, bytes('new result'));
    releaseRead();
    expect(Buffer.from(await staleRead).toString()).toBe('old result');
    expect(Buffer.from(await store.get(actionDigest)).toString()).toBe('new result');
  });

  it('passes NOT_FOUND through and caches nothing for it', async () => {
    const { store } = setup();
    const absent = Digest.ofBytes(bytes('never stored'));
    expectCode(await rejectionOf(store.get(absent)), Code.NOT_FOUND);
    expectCode(await rejectionOf(collect(store.read(absent))), Code.NOT_FOUND);
    expect(store.cachedBlobCount).toBe(0);
  });
});

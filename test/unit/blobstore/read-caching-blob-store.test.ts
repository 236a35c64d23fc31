import { describe, expect, it } from 'vitest';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { ReadCachingBlobStore } from '../../../src/lib/blobstore/read-caching-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { bytes, chunksOf, collect, describeBlobStoreContract, expectCode, patternBytes, RecordingBlobStore, rejectionOf } from '../../helpers/blob-store-contract.js';

describeBlobStoreContract('ReadCachingBlobStore over two MemoryBlobStores', async () => ({
  store: new ReadCachingBlobStore(new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 }), new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 })),
}));

describe('ReadCachingBlobStore', () => {
  const blob = (text: string) => ({ data: bytes(text), digest: Digest.ofBytes(bytes(text)) });
  const setup = (fastMaxSizeBytes = 1024 * 1024) => {
    const slowMemory = new MemoryBlobStore({ maxSizeBytes: 16 * 1024 * 1024 });
    const fastMemory = new MemoryBlobStore({ maxSizeBytes: fastMaxSizeBytes });
    const slow = new RecordingBlobStore(slowMemory);
    const fast = new RecordingBlobStore(fastMemory);
    return { slowMemory, fastMemory, slow, fast, store: new ReadCachingBlobStore(slow, fast) };
  };

  it('fills the fast store on a slow-store hit, then serves from fast', async () => {
    const { slowMemory, fastMemory, slow, store } = setup();
    const a = blob('only in slow');
    await slowMemory.put(a.digest, a.data);

    expect(Buffer.from(await store.get(a.digest)).toString()).toBe('only in slow');
    expect(await fastMemory.findMissing([a.digest])).toEqual([]);
    slow.take();
    expect(Buffer.from(await store.get(a.digest)).toString()).toBe('only in slow');
    expect(slow.take()).toEqual([]);
  });

  it('fills the fast store on a streamed read and serves the requested range', async () => {
    const { slowMemory, fastMemory, store } = setup();
    const a = blob('0123456789');
    await slowMemory.put(a.digest, a.data);
    expect(Buffer.from(await collect(store.read(a.digest, { offset: 3, limit: 4 }))).toString()).toBe('3456');
    expect(Buffer.from(await fastMemory.get(a.digest)).toString()).toBe('0123456789');
  });

  it('coalesces concurrent fills of one blob into a single slow read', async () => {
    const { slowMemory, slow, store } = setup();
    const a = blob('popular input');
    await slowMemory.put(a.digest, a.data);
    const texts = await Promise.all(Array.from({ length: 4 }, async () => Buffer.from(await collect(store.read(a.digest))).toString()));
    expect(texts).toEqual(Array(4).fill('popular input'));
    expect(slow.take().filter((c) => c.verb === 'read')).toHaveLength(1);
  });

  it('still serves a blob from slow when the fast store cannot hold it', async () => {
    const { slowMemory, fastMemory, store } = setup(8);
    const big = { data: patternBytes(100), digest: Digest.ofBytes(patternBytes(100)) };
    await slowMemory.put(big.digest, big.data);
    expect(Buffer.from(await collect(store.read(big.digest))).equals(Buffer.from(big.data))).toBe(true);
    expect(Buffer.from(await store.get(big.digest)).equals(Buffer.from(big.data))).toBe(true);
    expect(fastMemory.blobCount).toBe(0);
  });

  it('reports NOT_FOUND when neither store has the blob', async () => {
    const { store } = setup();
    const a = blob('nowhere');
    expectCode(await rejectionOf(store.get(a.digest)), Code.NOT_FOUND);
    expectCode(await rejectionOf(collect(store.read(a.digest))), Code.NOT_FOUND);
  });

  it('writes through to slow and then fast, for whole and streamed blobs', async () => {
    const { slowMemory, fastMemory, store } = setup();
    const a = blob('whole');
    const b = blob('streamed');
    await store.put(a.digest, a.data);
    await store.put(b.digest, chunksOf(b.data.subarray(0, 3), b.data.subarray(3)));
    expect(await slowMemory.findMissing([a.digest, b.digest])).toEqual([]);
    expect(await fastMemory.findMissing([a.digest, b.digest])).toEqual([]);
  });

  it('answers findMissing from the slow store, the truth', async () => {
    const { fastMemory, slow, fast, store } = setup();
    const a = blob('only in fast');
    await fastMemory.put(a.digest, a.data);
    expect(await store.findMissing([a.digest])).toEqual([a.digest]);
    expect(slow.take()).toEqual([{ verb: 'findMissing', digests: [a.digest.toString()] }]);
    expect(fast.take()).toEqual([]);
  });
});

import { describe, expect, it } from 'vitest';
import { ExistenceCachingBlobStore } from '../../../src/lib/blobstore/existence-caching-blob-store.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { bytes, describeBlobStoreContract, RecordingBlobStore } from '../../helpers/blob-store-contract.js';

describeBlobStoreContract('ExistenceCachingBlobStore over MemoryBlobStore', async () => ({
  store: new ExistenceCachingBlobStore(new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 }), {
    ttlMs: 60_000,
    maxEntries: 1000,
    clock: new FakeClock(),
  }),
}));

describe('ExistenceCachingBlobStore', () => {
  const blob = (text: string) => ({ data: bytes(text), digest: Digest.ofBytes(bytes(text)) });
  const setup = (maxEntries = 100) => {
    const memory = new MemoryBlobStore({ maxSizeBytes: 1024 });
    const backend = new RecordingBlobStore(memory);
    const clock = new FakeClock(1_000_000);
    const store = new ExistenceCachingBlobStore(backend, { ttlMs: 10_000, maxEntries, clock });
    return { memory, backend, clock, store };
  };

  it('asks the backend only about digests not recently seen present, until they expire', async () => {
    const { memory, backend, clock, store } = setup();
    const [a, b, c] = [blob('a'), blob('b'), blob('c')];
    await memory.put(a.digest, a.data);
    await memory.put(b.digest, b.data);

    // Fresh: nothing is known, so the backend is asked about everything.
    expect(await store.findMissing([a.digest, b.digest, c.digest])).toEqual([c.digest]);
    expect(backend.take()).toEqual([{ verb: 'findMissing', digests: [a.digest, b.digest, c.digest].map(String) }]);

    // Cached: a and b were present a moment ago; only c (absent, so not remembered) is asked about.
    await clock.advance(9_999);
    expect(await store.findMissing([a.digest, b.digest, c.digest])).toEqual([c.digest]);
    expect(backend.take()).toEqual([{ verb: 'findMissing', digests: [c.digest.toString()] }]);

    // All cached: the backend is not called at all.
    expect(await store.findMissing([b.digest, a.digest])).toEqual([]);
    expect(backend.take()).toEqual([]);

    // Expired: ttlMs after they were seen, a and b are asked about again.
    await clock.advance(1);
    expect(await store.findMissing([a.digest, b.digest])).toEqual([]);
    expect(backend.take()).toEqual([{ verb: 'findMissing', digests: [a.digest, b.digest].map(String) }]);
  });

  it('remembers a blob it has just stored as present', async () => {
    const { backend, store } = setup();
    const a = blob('uploaded');
    await store.put(a.digest, a.data);
    backend.take();
    expect(await store.findMissing([a.digest])).toEqual([]);
    expect(backend.take()).toEqual([]);
  });

  it('forgets the oldest entries beyond maxEntries', async () => {
    const { memory, backend, store } = setup(2);
    const [a, b, c] = [blob('a'), blob('b'), blob('c')];
    for (const x of [a, b, c]) await memory.put(x.digest, x.data);
    await store.findMissing([a.digest, b.digest, c.digest]);
    backend.take();
    expect(await store.findMissing([a.digest, b.digest, c.digest])).toEqual([]);
    expect(backend.take()).toEqual([{ verb: 'findMissing', digests: [a.digest.toString()] }]);
  });

  it('does not remember a failed upload', async () => {
    const { backend, store } = setup();
    const a = blob('fails');
    const failing = (async function* () {
      yield a.data;
      throw new Error('client went away');
    })();
    await expect(store.put(a.digest, failing)).rejects.toThrow('client went away');
    backend.take();
    expect(await store.findMissing([a.digest])).toEqual([a.digest]);
    expect(backend.take()).toHaveLength(1);
  });
});

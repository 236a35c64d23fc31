import { describe, expect, it } from 'vitest';
import { createBlobStore } from '../../../src/lib/blobstore/create-blob-store.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { type Shard, ShardingBlobStore } from '../../../src/lib/blobstore/sharding-blob-store.js';
import { needsLocalVerification } from '../../../src/lib/config/create-storage.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { bytes, collect, describeBlobStoreContract, expectCode, RecordingBlobStore, rejectionOf } from '../../helpers/blob-store-contract.js';

const memory = () => new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 });

describeBlobStoreContract('ShardingBlobStore over three MemoryBlobStores', async () => ({
  store: new ShardingBlobStore([
    { key: 'a', weight: 1, backend: memory() },
    { key: 'b', weight: 2, backend: memory() },
    { key: 'c', weight: 1, backend: memory() },
  ]),
}));

/** `n` distinct digests (of the texts "blob 0", "blob 1", …). */
function digests(n: number): Digest[] {
  return Array.from({ length: n }, (_, i) => Digest.ofBytes(bytes(`blob ${i}`)));
}

function counts(store: ShardingBlobStore, ds: readonly Digest[], shards: number): number[] {
  const out = new Array<number>(shards).fill(0);
  for (const d of ds) out[store.shardIndexOf(d)]!++;
  return out;
}

describe('ShardingBlobStore', () => {
  it('spreads digests roughly in proportion to the weights', () => {
    const store = new ShardingBlobStore([
      { key: 'a', weight: 1, backend: memory() },
      { key: 'b', weight: 2, backend: memory() },
      { key: 'c', weight: 5, backend: memory() },
    ]);
    const n = 16_000;
    const [a, b, c] = counts(store, digests(n), 3);
    // Expected 2000, 4000 and 10000; a binomial's standard deviation here is at most ~61.
    expect(a).toBeGreaterThan(1700);
    expect(a).toBeLessThan(2300);
    expect(b).toBeGreaterThan(3600);
    expect(b).toBeLessThan(4400);
    expect(c).toBeGreaterThan(9500);
    expect(c).toBeLessThan(10500);
  });

  it('moves only the keys the added shard wins, about 1/n of them', () => {
    const shards: Shard[] = ['a', 'b', 'c'].map((key) => ({ key, weight: 1, backend: memory() }));
    const before = new ShardingBlobStore(shards);
    const after = new ShardingBlobStore([...shards, { key: 'd', weight: 1, backend: memory() }]);
    const ds = digests(8000);
    let moved = 0;
    for (const d of ds) {
      const was = before.shardIndexOf(d);
      const now = after.shardIndexOf(d);
      if (was !== now) {
        moved++;
        // A key that moves goes to the new shard, never between the old ones.
        expect(now).toBe(3);
      }
    }
    // Expected 1/4 of 8000 = 2000.
    expect(moved).toBeGreaterThan(1700);
    expect(moved).toBeLessThan(2300);
  });

  it('places by shard key and weight, not by position in the list', () => {
    const [x, y, z] = [memory(), memory(), memory()];
    const one = new ShardingBlobStore([
      { key: 'x', weight: 1, backend: x },
      { key: 'y', weight: 3, backend: y },
      { key: 'z', weight: 1, backend: z },
    ]);
    const other = new ShardingBlobStore([
      { key: 'z', weight: 1, backend: z },
      { key: 'x', weight: 1, backend: x },
      { key: 'y', weight: 3, backend: y },
    ]);
    const backendOf = (s: ShardingBlobStore, d: Digest) => (s as unknown as { shards: Shard[] }).shards[s.shardIndexOf(d)]!.backend;
    for (const d of digests(500)) expect(backendOf(other, d)).toBe(backendOf(one, d));
  });

  it('stores each blob on exactly one shard and routes reads there', async () => {
    const backends = [memory(), memory()];
    const store = new ShardingBlobStore(backends.map((backend, i) => ({ key: String(i), weight: 1, backend })));
    const ds = digests(40);
    for (const [i, d] of ds.entries()) await store.put(d, bytes(`blob ${i}`));
    const held = await Promise.all(backends.map(async (b) => ds.length - (await b.findMissing(ds)).length));
    expect(held[0]! + held[1]!).toBe(40);
    expect(held[0]).toBeGreaterThan(0);
    expect(held[1]).toBeGreaterThan(0);
    for (const [i, d] of ds.entries()) {
      expect(Buffer.from(await store.get(d)).toString()).toBe(`blob ${i}`);
      expect(Buffer.from(await collect(store.read(d))).toString()).toBe(`blob ${i}`);
    }
  });

  it('asks each shard once about its own digests in FindMissing, and merges in argument order', async () => {
    const recorders = [new RecordingBlobStore(memory()), new RecordingBlobStore(memory())];
    const store = new ShardingBlobStore(recorders.map((backend, i) => ({ key: String(i), weight: 1, backend })));
    const ds = digests(30);
    for (const [i, d] of ds.entries()) if (i % 3 === 0) await store.put(d, bytes(`blob ${i}`));
    recorders.forEach((r) => r.take());

    const missing = await store.findMissing(ds);
    expect(missing.map(String)).toEqual(ds.filter((_, i) => i % 3 !== 0).map(String));
    for (const [i, r] of recorders.entries()) {
      const calls = r.take();
      expect(calls).toHaveLength(1);
      expect(calls[0]!.verb).toBe('findMissing');
      const own = ds.filter((d) => store.shardIndexOf(d) === i).map(String);
      expect(calls[0]!.digests).toEqual(own);
    }
  });

  it('keeps the code of a shard error and names the shard', async () => {
    const store = new ShardingBlobStore([
      { key: 'a', weight: 1, backend: memory() },
      { key: 'b', weight: 1, backend: memory() },
    ]);
    const d = digests(1)[0]!;
    const err = await rejectionOf(store.get(d));
    expectCode(err, Code.NOT_FOUND);
    expect((err as Error).message).toMatch(new RegExp(`^Shard ${store.shardIndexOf(d)}: `));
    expectCode(await rejectionOf(collect(store.read(d))), Code.NOT_FOUND);
  });

  it('refuses no shards, a non-positive weight and a key used twice', () => {
    expect(() => new ShardingBlobStore([])).toThrow(/at least one shard/);
    expect(() => new ShardingBlobStore([{ key: 'a', weight: 0, backend: memory() }])).toThrow(/positive/);
    expect(
      () =>
        new ShardingBlobStore([
          { key: 'a', weight: 1, backend: memory() },
          { key: 'a', weight: 1, backend: memory() },
        ]),
    ).toThrow(/twice/);
  });
});

describe('createBlobStore with a sharding node', () => {
  it('builds a shard per entry, keyed by address for grpc backends', async () => {
    const closers: (() => unknown)[] = [];
    const store = await createBlobStore(
      { sharding: { shards: [{ weight: 1, backend: { grpc: { address: '127.0.0.1:1' } } }, { weight: 2, backend: { memory: { max_size_bytes: '1MiB' } } }] } },
      { onClose: (c) => closers.push(c) },
    );
    expect(store).toBeInstanceOf(ShardingBlobStore);
    const shards = (store as unknown as { shards: Shard[] }).shards;
    expect(shards.map((s) => [s.key, s.weight])).toEqual([
      ['127.0.0.1:1', 1],
      ['1', 2],
    ]);
    for (const c of closers) await c();
  });

  it('names the path of a bad shard', async () => {
    const err = await rejectionOf(
      createBlobStore({ sharding: { shards: [{ weight: 1, key: 'k', backend: { memory: { max_size_bytes: 1 } } }, { weight: 1, key: 'k', backend: { memory: { max_size_bytes: 1 } } }] } }),
    );
    expectCode(err, Code.INVALID_ARGUMENT);
    expect((err as Error).message).toMatch(/blob_store\.sharding\.shards\[1\]\.key/);
    const noShards = await rejectionOf(createBlobStore({ sharding: { shards: [] } }));
    expect((noShards as Error).message).toMatch(/shards: must be a non-empty list/);
  });

  it('is verified locally unless every shard forwards to a remote server', () => {
    const grpc = (address: string) => ({ weight: 1, backend: { grpc: { address } } });
    expect(needsLocalVerification({ sharding: { shards: [grpc('a:1'), grpc('b:1')] } })).toBe(false);
    expect(needsLocalVerification({ sharding: { shards: [grpc('a:1'), { weight: 1, backend: { memory: { max_size_bytes: 1 } } }] } })).toBe(true);
  });
});

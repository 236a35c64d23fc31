import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { PackedBlobStore, type PackedBlobStoreOptions } from '../../../src/lib/blobstore/packed-blob-store.js';
import { recordHeaderBytes } from '../../../src/lib/blobstore/pack-file.js';
import { VerifyingBlobStore } from '../../../src/lib/blobstore/verifying-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { RecordingBlobStore, bytes, chunksOf, collect, describeBlobStoreContract, expectCode, patternBytes, rejectionOf } from '../../helpers/blob-store-contract.js';

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-packed-'));
}

describeBlobStoreContract('PackedBlobStore (large blobs in a memory store)', async () => {
  const dir = await tempDir();
  const store = await PackedBlobStore.open({ path: dir, maxSizeBytes: 16 * 1024 * 1024 }, new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 }));
  return {
    store,
    close: async () => {
      await store.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
});

describeBlobStoreContract('VerifyingBlobStore over PackedBlobStore', async () => {
  const dir = await tempDir();
  const packed = await PackedBlobStore.open({ path: dir, maxSizeBytes: 16 * 1024 * 1024 }, new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 }));
  return {
    store: new VerifyingBlobStore(packed),
    close: async () => {
      await packed.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
});

describe('PackedBlobStore', () => {
  let dir: string;
  let backend: RecordingBlobStore;
  const opened: PackedBlobStore[] = [];
  const open = async (opts: Partial<PackedBlobStoreOptions> = {}) => {
    const store = await PackedBlobStore.open({ path: dir, maxSizeBytes: 1024 * 1024, ...opts }, backend);
    opened.push(store);
    return store;
  };
  const blob = (text: string) => ({ data: bytes(text), digest: Digest.ofBytes(bytes(text)) });
  const packFiles = async () => (await fs.readdir(dir)).filter((n) => n.endsWith('.pack')).sort();
  const packBytes = async () => {
    let total = 0;
    for (const name of await packFiles()) total += (await fs.stat(path.join(dir, name))).size;
    return total;
  };
  const missing = async (store: PackedBlobStore, digests: Digest[]) => (await store.findMissing(digests)).map((d) => d.key);

  beforeEach(async () => {
    dir = await tempDir();
    backend = new RecordingBlobStore(new MemoryBlobStore({ maxSizeBytes: 16 * 1024 * 1024 }));
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('appends small blobs to one pack, one record each, and hands larger ones to the backend', async () => {
    const store = await open({ maxBlobSizeBytes: 1024 });
    const a = blob('packed a');
    const b = blob('packed b');
    const big = patternBytes(1025);
    const bigDigest = Digest.ofBytes(big);
    await store.put(a.digest, a.data);
    await store.put(b.digest, chunksOf(b.data.subarray(0, 3), b.data.subarray(3)));
    await store.put(bigDigest, big);
    expect(await packFiles()).toEqual(['000000000001.pack']);
    expect(await packBytes()).toBe(recordHeaderBytes(a.digest) + a.data.length + recordHeaderBytes(b.digest) + b.data.length);
    expect(store.blobCount).toBe(2);
    expect(backend.take().map((c) => c.verb)).toEqual(['put']);

    expect(Buffer.from(await store.get(a.digest)).toString()).toBe('packed a');
    expect(Buffer.from(await collect(store.read(b.digest, { offset: 2, limit: 3 }))).toString()).toBe('cke');
    expect(Buffer.from(await store.get(bigDigest)).equals(Buffer.from(big))).toBe(true);
    const absent = blob('never stored').digest;
    expect(await missing(store, [absent, a.digest, bigDigest, Digest.ofBytes(patternBytes(2000))])).toEqual([absent.key, Digest.ofBytes(patternBytes(2000)).key]);
    // Only the large digests were asked of the backend.
    expect(backend.take().filter((c) => c.verb === 'findMissing')).toEqual([{ verb: 'findMissing', digests: [bigDigest.toString(), Digest.ofBytes(patternBytes(2000)).toString()] }]);
  });

  it('rebuilds its index from the packs when reopened', async () => {
    const first = await open();
    const blobs = ['one', 'two', 'three'].map(blob);
    for (const b of blobs) await first.put(b.digest, b.data);
    await first.put(blobs[0]!.digest.withInstanceName('team/x'), blobs[0]!.data);
    await first.close();

    const second = await open();
    expect(second.blobCount).toBe(4);
    expect(await missing(second, [...blobs.map((b) => b.digest), blobs[0]!.digest.withInstanceName('team/x')])).toEqual([]);
    expect(Buffer.from(await second.get(blobs[2]!.digest)).toString()).toBe('three');
    // New appends go to a new pack; the old one stays readable.
    const four = blob('four');
    await second.put(four.digest, four.data);
    expect(await packFiles()).toEqual(['000000000001.pack', '000000000002.pack']);
    expect(Buffer.from(await second.get(blobs[0]!.digest.withInstanceName('team/x'))).toString()).toBe('one');
  });

  it('keeps the records after a larger one when reopened with a lower threshold', async () => {
    const first = await open({ maxBlobSizeBytes: 1024 });
    const large = patternBytes(600);
    const small = blob('small');
    await first.put(Digest.ofBytes(large), large);
    await first.put(small.digest, small.data);
    await first.close();

    const second = await open({ maxBlobSizeBytes: 100 });
    expect(Buffer.from(await second.get(small.digest)).toString()).toBe('small');
    // The 600-byte blob is now the backend's to hold, which never had it.
    expect(await missing(second, [Digest.ofBytes(large), small.digest])).toEqual([Digest.ofBytes(large).key]);
    expectCode(await rejectionOf(PackedBlobStore.open({ path: dir, maxSizeBytes: 1 << 20, maxBlobSizeBytes: 32 * 1024 * 1024 }, backend)), Code.INVALID_ARGUMENT);
  });

  it('truncates a torn tail (a crash mid-append) and never serves it', async () => {
    const first = await open();
    const [a, b, c] = ['first', 'second', 'third, torn'].map(blob);
    for (const x of [a!, b!, c!]) await first.put(x.digest, x.data);
    await first.close();
    const file = path.join(dir, '000000000001.pack');
    const whole = (await fs.stat(file)).size;
    // The process died 5 bytes into the third record's payload.
    const torn = whole - c!.data.length + 5;
    await fs.truncate(file, torn);

    const second = await open();
    expect(await missing(second, [a!.digest, b!.digest, c!.digest])).toEqual([c!.digest.key]);
    expectCode(await rejectionOf(second.get(c!.digest)), Code.NOT_FOUND);
    expect((await fs.stat(file)).size).toBe(torn - 5 - recordHeaderBytes(c!.digest));
    await second.put(c!.digest, c!.data);
    expect(Buffer.from(await second.get(c!.digest)).toString()).toBe('third, torn');
  });

  it('truncates garbage after the last record (a tail of zeros after a power loss)', async () => {
    const first = await open();
    const a = blob('kept');
    await first.put(a.digest, a.data);
    await first.close();
    const file = path.join(dir, '000000000001.pack');
    const whole = (await fs.stat(file)).size;
    await fs.appendFile(file, Buffer.alloc(4096));
    const second = await open();
    expect(await missing(second, [a.digest])).toEqual([]);
    expect((await fs.stat(file)).size).toBe(whole);
  });

  it('never serves a record whose bytes changed on disk, and reports it missing (before and after a restart)', async () => {
    const first = await open();
    const [a, b, c] = ['alpha record', 'bravo record', 'charlie record'].map(blob);
    for (const x of [a!, b!, c!]) await first.put(x.digest, x.data);
    const file = path.join(dir, '000000000001.pack');
    const content = await fs.readFile(file);
    const bravoPayload = content.indexOf(Buffer.from('bravo record'));
    content[bravoPayload + 2] ^= 0x01;
    await fs.writeFile(file, content);

    expectCode(await rejectionOf(first.get(b!.digest)), Code.NOT_FOUND);
    expectCode(await rejectionOf(collect(first.read(b!.digest, { offset: 0, limit: 1 }))), Code.NOT_FOUND);
    expect(await missing(first, [a!.digest, b!.digest, c!.digest])).toEqual([b!.digest.key]);
    await first.close();

    // At open the record's CRC fails: skipped, while the records after it are still found.
    const second = await open();
    expect(await missing(second, [a!.digest, b!.digest, c!.digest])).toEqual([b!.digest.key]);
    expect(Buffer.from(await second.get(c!.digest)).toString()).toBe('charlie record');
  });

  it('drops the oldest packs beyond max_size_bytes: pack files and index stay bounded', async () => {
    const maxSizeBytes = 64 * 1024;
    const store = await open({ maxSizeBytes, packSizeBytes: 8 * 1024 });
    const digests: Digest[] = [];
    for (let i = 0; i < 300; i++) {
      const data = patternBytes(1000, i + 1);
      const digest = Digest.ofBytes(data);
      digests.push(digest);
      await store.put(digest, data);
      expect(store.sizeBytes).toBeLessThanOrEqual(maxSizeBytes);
    }
    expect(await packBytes()).toBe(store.sizeBytes);
    expect(store.sizeBytes).toBeGreaterThan(maxSizeBytes - 8 * 1024);
    expect((await packFiles()).length).toBe(store.packCount);
    // A pack closes when the next record would overflow it: each holds at least 8 KiB less one record.
    expect(store.packCount).toBeLessThanOrEqual(Math.ceil(maxSizeBytes / (8 * 1024 - 1100)));
    // FIFO by pack: the first blobs are gone, the last ones present; the index counts only what is on disk.
    expect(await missing(store, digests.slice(0, 10))).toHaveLength(10);
    expect(await missing(store, digests.slice(-40))).toEqual([]);
    expect(store.blobCount).toBe(300 - (await store.findMissing(digests)).length);
    expect(store.evictedBlobCount).toBe(300 - store.blobCount);
  });

  it('bounds the index by max_index_entries', async () => {
    const store = await open({ maxIndexEntries: 50, packSizeBytes: 1024 });
    for (let i = 0; i < 200; i++) {
      const data = patternBytes(100, i + 1);
      await store.put(Digest.ofBytes(data), data);
      expect(store.blobCount).toBeLessThanOrEqual(50);
    }
    expect(store.blobCount).toBeGreaterThan(30);
  });

  it('copies recently used records of a dropped pack forward, and lets cold ones go', async () => {
    const store = await open({ maxSizeBytes: 32 * 1024, packSizeBytes: 4 * 1024 });
    const hot = blob('hot blob, read often');
    const cold = blob('cold blob, never read');
    await store.put(hot.digest, hot.data);
    await store.put(cold.digest, cold.data);
    for (let i = 0; i < 200; i++) {
      expect(Buffer.from(await store.get(hot.digest)).toString()).toBe('hot blob, read often');
      const data = patternBytes(500, i + 1);
      await store.put(Digest.ofBytes(data), data);
    }
    await store.compacted();
    expect(await missing(store, [hot.digest, cold.digest])).toEqual([cold.digest.key]);
    expect(Buffer.from(await store.get(hot.digest)).toString()).toBe('hot blob, read often');
    expect(await fs.readdir(dir)).not.toContain('000000000001.pack');
  });

  it('stores one record when the same blob is uploaded concurrently', async () => {
    const store = await open();
    const a = blob('uploaded by many clients at once');
    await Promise.all([
      ...Array.from({ length: 5 }, () => store.put(a.digest, a.data)),
      ...Array.from({ length: 5 }, () => store.put(a.digest, chunksOf(a.data.subarray(0, 7), a.data.subarray(7)))),
    ]);
    expect(store.blobCount).toBe(1);
    expect(await packBytes()).toBe(recordHeaderBytes(a.digest) + a.data.length);
  });

  it('serves reads that were under way when their pack was dropped', async () => {
    const store = await open({ maxSizeBytes: 8 * 1024, packSizeBytes: 2 * 1024 });
    const a = blob('read while its pack goes');
    await store.put(a.digest, a.data);
    const reads = Array.from({ length: 5 }, () => store.get(a.digest));
    // Enough appends, in the same turn, to drop the first pack before those reads run.
    for (let i = 0; i < 40; i++) {
      const data = patternBytes(400, i + 1);
      await store.put(Digest.ofBytes(data), data);
    }
    for (const r of await Promise.all(reads)) expect(Buffer.from(r).toString()).toBe('read while its pack goes');
    expect(await fs.readdir(dir)).not.toContain('000000000001.pack');
  });

  it('refuses a write still streaming when the store closes, and keeps what was stored', async () => {
    const store = await open();
    const a = blob('stored before close');
    await store.put(a.digest, a.data);
    const b = blob('still streaming at close');
    let release = (): void => {};
    const stalled = new Promise<void>((resolve) => (release = resolve));
    const source = (async function* () {
      yield b.data.subarray(0, 4);
      await stalled;
      yield b.data.subarray(4);
    })();
    const put = store.put(b.digest, source);
    await store.close();
    release();
    expectCode(await rejectionOf(put), Code.UNAVAILABLE);
    expectCode(await rejectionOf(store.get(a.digest)), Code.UNAVAILABLE);

    const reopened = await open();
    expect(await missing(reopened, [a.digest, b.digest])).toEqual([b.digest.key]);
  });

  it('rejects a small blob whose bytes are more or fewer than its digest says', async () => {
    const store = await open();
    const a = blob('twelve bytes');
    const wrong = Digest.create('', 'sha256', a.digest.hash, 5);
    expectCode(await rejectionOf(store.put(wrong, a.data)), Code.INVALID_ARGUMENT);
    expectCode(await rejectionOf(store.put(wrong, chunksOf(a.data))), Code.INVALID_ARGUMENT);
    expect(store.blobCount).toBe(0);
  });
});

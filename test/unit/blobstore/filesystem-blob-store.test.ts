import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_READ_CHUNK_BYTES } from '../../../src/lib/blobstore/blob-store.js';
import { escapeInstanceName, FilesystemBlobStore } from '../../../src/lib/blobstore/filesystem-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { newHasher } from '../../../src/lib/digest/digest-function.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { bytes, chunksOf, collect, describeBlobStoreContract, expectCode, patternBytes, rejectionOf } from '../../helpers/blob-store-contract.js';

/** The V8 `gc()` function, without needing the test process to be started with --expose-gc. */
function exposeGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-fs-store-'));
}

describeBlobStoreContract('FilesystemBlobStore', async () => {
  const dir = await tempDir();
  const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 64 * 1024 * 1024 });
  return {
    store,
    close: async () => {
      await store.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
});

describe('FilesystemBlobStore', () => {
  let dir: string;
  const opened: FilesystemBlobStore[] = [];
  const open = async (maxSizeBytes = 1024 * 1024) => {
    const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes });
    opened.push(store);
    return store;
  };
  const blob = (text: string) => ({ data: bytes(text), digest: Digest.ofBytes(bytes(text)) });
  const tempFiles = () => fs.readdir(path.join(dir, '.tmp'));

  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('lays blobs out by instance, digest function and hash prefix', async () => {
    const store = await open();
    const a = blob('layout');
    await store.put(a.digest.withInstanceName('team/a_b'), a.data);
    await store.put(a.digest, a.data);
    const hash = a.digest.hash;
    await expect(fs.readFile(path.join(dir, '_', 'sha256', hash.slice(0, 2), `${hash}-6`), 'utf8')).resolves.toBe('layout');
    await expect(fs.readFile(path.join(dir, 'team%2Fa%5Fb', 'sha256', hash.slice(0, 2), `${hash}-6`), 'utf8')).resolves.toBe('layout');
    expect(escapeInstanceName('.hidden')).toBe('%2Ehidden');
  });

  it('hashes instance directory names that percent-encoding makes too long, and finds them again when reopened', async () => {
    const longName = 'é'.repeat(127); // 254 bytes: valid, but 762 characters percent-encoded
    const first = await open();
    const a = blob('long instance');
    await first.put(a.digest.withInstanceName(longName), a.data);
    const dirName = escapeInstanceName(longName);
    expect(dirName).toMatch(/^=[0-9a-f]{64}$/);
    expect((await fs.readdir(dir)).filter((e) => !e.startsWith('.'))).toEqual([dirName]);
    await first.close();

    const second = await open();
    expect(await second.findMissing([a.digest.withInstanceName(longName), a.digest])).toEqual([a.digest]);
    expect(Buffer.from(await second.get(a.digest.withInstanceName(longName))).toString()).toBe('long instance');
  });

  it('rebuilds its index from disk when reopened', async () => {
    const first = await open();
    const a = blob('survives restarts');
    const b = blob('also survives');
    await first.put(a.digest, a.data);
    await first.put(b.digest.withInstanceName('ci'), b.data);
    await first.close();

    const second = await open();
    expect(await second.findMissing([a.digest, b.digest.withInstanceName('ci'), b.digest])).toEqual([b.digest]);
    expect(Buffer.from(await second.get(a.digest)).toString()).toBe('survives restarts');
    expect(second.sizeBytes).toBe(a.data.length + b.data.length);
    expect(second.blobCount).toBe(2);
  });

  it('removes leftover temp files and ignores foreign files when opened', async () => {
    await fs.mkdir(path.join(dir, '.tmp'), { recursive: true });
    await fs.writeFile(path.join(dir, '.tmp', 'crashed-upload'), 'half');
    await fs.mkdir(path.join(dir, '_', 'sha256', 'ab'), { recursive: true });
    await fs.writeFile(path.join(dir, '_', 'sha256', 'ab', 'not-a-blob'), 'x');
    const store = await open();
    expect(await tempFiles()).toEqual([]);
    expect(store.blobCount).toBe(0);
  });

  it('evicts the least recently accessed blobs beyond its capacity, deleting their files', async () => {
    const store = await open(30);
    const [a, b, c] = [blob('a'.repeat(10)), blob('b'.repeat(10)), blob('c'.repeat(10))];
    await store.put(a.digest, a.data);
    await store.put(b.digest, b.data);
    await store.put(c.digest, c.data);
    // Touch `a` by reading it and `b` by asking about it: `c` is now the least recently used.
    await collect(store.read(a.digest));
    await store.findMissing([b.digest]);
    const d = blob('d'.repeat(10));
    await store.put(d.digest, d.data);
    await store.close();

    expect(await store.findMissing([a.digest, b.digest, c.digest, d.digest])).toEqual([c.digest]);
    expect(store.sizeBytes).toBe(30);
    const cHash = c.digest.hash;
    await expect(fs.stat(path.join(dir, '_', 'sha256', cHash.slice(0, 2), `${cHash}-10`))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('can reopen without a stat per file, taking sizes from file names and still evicting down to capacity', async () => {
    const first = await open(100);
    const blobs = ['1'.repeat(10), '2'.repeat(10), '3'.repeat(10)].map(blob);
    for (const b of blobs) await first.put(b.digest, b.data);
    await first.close();
    const full = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 100, sizesFromFileNames: true });
    opened.push(full);
    expect(full.blobCount).toBe(3);
    expect(full.sizeBytes).toBe(30);
    expect(await full.findMissing(blobs.map((b) => b.digest))).toEqual([]);
    expect(Buffer.from(await full.get(blobs[1]!.digest)).toString()).toBe('2'.repeat(10));
    await full.close();
    const smaller = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 20, sizesFromFileNames: true });
    opened.push(smaller);
    await smaller.close();
    expect(smaller.blobCount).toBe(2);
    expect(smaller.sizeBytes).toBe(20);
    const onDisk = await fs.readdir(path.join(dir, '_', 'sha256'), { recursive: true });
    expect(onDisk.filter((name) => /-10$/.test(name))).toHaveLength(2);
  });

  it('evicts down to a lowered capacity when reopened', async () => {
    const first = await open(100);
    for (const text of ['1'.repeat(10), '2'.repeat(10), '3'.repeat(10)]) await first.put(blob(text).digest, blob(text).data);
    await first.close();
    const second = await open(20);
    await second.close();
    expect(second.sizeBytes).toBeLessThanOrEqual(20);
    expect(second.blobCount).toBe(2);
  });

  it('accounts a blob uploaded concurrently by several writers once', async () => {
    const store = await open();
    const data = patternBytes(200_000);
    const digest = Digest.ofBytes(data);
    const slowChunks = async function* () {
      for (let i = 0; i < data.length; i += 10_000) {
        await new Promise((r) => setImmediate(r));
        yield data.subarray(i, i + 10_000);
      }
    };
    await Promise.all(Array.from({ length: 5 }, () => store.put(digest, slowChunks())));
    expect(store.sizeBytes).toBe(data.length);
    expect(store.blobCount).toBe(1);
    expect(Buffer.from(await store.get(digest)).equals(Buffer.from(data))).toBe(true);
    expect(await tempFiles()).toEqual([]);
  });

  it('removes the temp file of a failed upload', async () => {
    const store = await open();
    const a = blob('will fail');
    const failing = (async function* () {
      yield a.data.subarray(0, 3);
      throw StatusError.invalidArgument('Failed to store blob: client declared x, server computed y');
    })();
    expectCode(await rejectionOf(store.put(a.digest, failing)), Code.INVALID_ARGUMENT);
    expect(await tempFiles()).toEqual([]);
    expect(store.sizeBytes).toBe(0);
  });

  it('stores chunks of every size in order, whether they fill, straddle or exceed a write batch', async () => {
    const store = await open(8 * 1024 * 1024);
    const data = patternBytes(5 * 1024 * 1024 + 123);
    const digest = Digest.ofBytes(data);
    // 16 KiB (Bazel's size), odd sizes crossing the 1 MiB batch boundary, and one chunk larger than a batch.
    const sizes = [16 * 1024, 16 * 1024, 1000 * 1024, 7, 1536 * 1024, 3, 512 * 1024 + 1];
    const chunks: Uint8Array[] = [];
    let offset = 0;
    for (const size of sizes) {
      chunks.push(data.subarray(offset, offset + size));
      offset += size;
    }
    chunks.push(data.subarray(offset));
    await store.put(digest, chunksOf(...chunks));
    expect(Buffer.from(await store.get(digest)).equals(Buffer.from(data))).toBe(true);
    expect(await tempFiles()).toEqual([]);
  });

  it('removes the temp file of an upload that fails while a batch is being written', async () => {
    const store = await open(8 * 1024 * 1024);
    const data = patternBytes(4 * 1024 * 1024);
    const digest = Digest.ofBytes(data);
    const failing = (async function* () {
      for (let offset = 0; offset < 3 * 1024 * 1024; offset += 16 * 1024) yield data.subarray(offset, offset + 16 * 1024);
      throw StatusError.invalidArgument('Failed to store blob: the client went away');
    })();
    expectCode(await rejectionOf(store.put(digest, failing)), Code.INVALID_ARGUMENT);
    expect(await tempFiles()).toEqual([]);
    expect(await store.findMissing([digest])).toEqual([digest]);
  });

  it('recreates a shard directory that was removed after it first stored a blob there', async () => {
    const store = await open();
    const a = blob('first in its shard');
    await store.put(a.digest, a.data);
    await fs.rm(path.join(dir, '_'), { recursive: true });
    const b = blob('after the directory was removed');
    await store.put(b.digest, b.data);
    await store.put(a.digest, a.data);
    expect(Buffer.from(await store.get(a.digest)).toString()).toBe('first in its shard');
    expect(Buffer.from(await store.get(b.digest)).toString()).toBe('after the directory was removed');
  });

  it('accounts the bytes stored, not the size in the digest', async () => {
    // The action cache stores ActionResults under action digests, whose size describes the Action.
    const store = await open();
    const actionDigest = Digest.ofBytes(patternBytes(500));
    await store.put(actionDigest, bytes('result'));
    expect(store.sizeBytes).toBe(6);
    expect(Buffer.from(await store.get(actionDigest)).toString()).toBe('result');
    await store.close();
    const reopened = await open();
    expect(reopened.sizeBytes).toBe(6);
  });

  it('refuses an upload larger than its capacity with RESOURCE_EXHAUSTED and keeps nothing', async () => {
    const store = await open(10);
    const big = blob('eleven bytes');
    expectCode(await rejectionOf(store.put(big.digest, chunksOf(big.data.subarray(0, 6), big.data.subarray(6)))), Code.RESOURCE_EXHAUSTED);
    expect(await tempFiles()).toEqual([]);
  });

  it('reports a blob whose file vanished as NOT_FOUND and forgets it', async () => {
    const store = await open();
    const a = blob('deleted by an operator');
    await store.put(a.digest, a.data);
    await fs.rm(path.join(dir, '_'), { recursive: true });
    expectCode(await rejectionOf(store.get(a.digest)), Code.NOT_FOUND);
    expect(await store.findMissing([a.digest])).toEqual([a.digest]);
    expect(store.sizeBytes).toBe(0);

    await store.put(a.digest, a.data);
    await fs.rm(path.join(dir, '_'), { recursive: true });
    expectCode(await rejectionOf(collect(store.read(a.digest))), Code.NOT_FOUND);
    expect(store.blobCount).toBe(0);
  });

  it('keeps a blob readable while it is evicted mid-read', async () => {
    const store = await open(3 * MAX_READ_CHUNK_BYTES);
    const data = patternBytes(2 * MAX_READ_CHUNK_BYTES);
    const digest = Digest.ofBytes(data);
    await store.put(digest, data);
    const reader = store.read(digest)[Symbol.asyncIterator]();
    const first = await reader.next();
    // Another blob pushes this one out; its file is unlinked but the open handle still reads it.
    const other = patternBytes(2 * MAX_READ_CHUNK_BYTES, 99);
    await store.put(Digest.ofBytes(other), other);
    await store.close();
    expect(await store.findMissing([digest])).toEqual([digest]);
    const rest: Uint8Array[] = [];
    for (let step = await reader.next(); !step.done; step = await reader.next()) rest.push(step.value);
    expect(Buffer.concat([first.value as Uint8Array, ...rest]).equals(Buffer.from(data))).toBe(true);
  });

  it('streams a 64 MiB blob in and out without holding it in memory', async () => {
    const sizeBytes = 64 * 1024 * 1024;
    const chunkBytes = 256 * 1024;
    const store = await open(sizeBytes + 1);
    // One reusable chunk buffer, varied per position: the final hash can only match if the store wrote
    // each chunk before pulling the next (it never held on to chunks to write later).
    const chunk = new Uint8Array(chunkBytes);
    const hasher = newHasher('sha256');
    const fill = (i: number) => {
      chunk.fill(i & 0xff);
      chunk[0] = (i >> 8) & 0xff;
    };
    for (let i = 0; i < sizeBytes / chunkBytes; i++) {
      fill(i);
      hasher.update(chunk);
    }
    const digest = Digest.create('', 'sha256', hasher.digest('hex'), sizeBytes);

    // Live buffer memory, measured after a full GC so that garbage chunks awaiting collection don't count.
    const gc = exposeGc();
    gc();
    const before = process.memoryUsage();
    let peakBytes = 0;
    const sample = () => {
      gc();
      const m = process.memoryUsage();
      peakBytes = Math.max(peakBytes, m.arrayBuffers - before.arrayBuffers);
    };
    await store.put(
      digest,
      (async function* () {
        for (let i = 0; i < sizeBytes / chunkBytes; i++) {
          fill(i);
          if (i % 32 === 0) sample();
          yield chunk;
        }
      })(),
    );
    const readHasher = newHasher('sha256');
    let readBytes = 0;
    let largestChunk = 0;
    let n = 0;
    for await (const c of store.read(digest)) {
      readHasher.update(c);
      readBytes += c.length;
      largestChunk = Math.max(largestChunk, c.length);
      if (n++ % 8 === 0) sample();
    }
    expect(readBytes).toBe(sizeBytes);
    expect(readHasher.digest('hex')).toBe(digest.hash);
    expect(largestChunk).toBeLessThanOrEqual(MAX_READ_CHUNK_BYTES);
    // Holding the blob would cost at least 64 MiB of live buffers; streaming holds a chunk or two.
    expect(peakBytes).toBeLessThan(sizeBytes / 4);
    expect((await fs.stat(path.join(dir, '_', 'sha256', digest.hash.slice(0, 2), `${digest.hash}-${sizeBytes}`))).size).toBe(sizeBytes);
  });

  it('answers findMissing for 10k digests from its index without touching the disk', async () => {
    const store = await open();
    const present = Array.from({ length: 100 }, (_, i) => blob(`present ${i}`));
    for (const p of present) await store.put(p.digest, p.data);
    // With the directory gone, any disk access would show up as a wrong answer.
    await fs.rm(path.join(dir, '_'), { recursive: true });
    const absent = Array.from({ length: 9_900 }, (_, i) => Digest.ofBytes(bytes(`absent ${i}`)));
    const missing = await store.findMissing([...present.map((p) => p.digest), ...absent]);
    expect(missing).toHaveLength(9_900);
  });
});

/**
 * FilesystemBlobStores sharing one directory, as the processes of `serve apiserver --processes N`
 * do: each store here stands for one process (its own index), the directory is the only thing
 * they share. See shared-blob-directory.ts for the rules these tests pin down.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FilesystemBlobStore } from '../../../src/lib/blobstore/filesystem-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { bytes, collect, describeBlobStoreContract, expectCode, patternBytes, rejectionOf } from '../../helpers/blob-store-contract.js';

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-shared-store-'));
}

/** Bytes of the blob files under `dir` (temp directories left out). */
async function bytesOnDisk(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.parentPath.includes(`${path.sep}.`) || entry.name.startsWith('.')) continue;
    total += (await fs.stat(path.join(entry.parentPath, entry.name))).size;
  }
  return total;
}

describeBlobStoreContract('FilesystemBlobStore (shared directory, process 1 of 2)', async () => {
  const dir = await tempDir();
  const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 128 * 1024 * 1024, shared: { processes: 2, rank: 0 } });
  return {
    store,
    close: async () => {
      await store.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
});

describe('FilesystemBlobStore in a directory shared by two processes', () => {
  let dir: string;
  const opened: FilesystemBlobStore[] = [];
  const open = async (rank: number, maxSizeBytes = 1024 * 1024, contentAddressed = true) => {
    const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes, sizesFromFileNames: contentAddressed, shared: { processes: 2, rank } });
    opened.push(store);
    return store;
  };
  const blob = (text: string) => ({ data: bytes(text), digest: Digest.ofBytes(bytes(text)) });

  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('finds a blob another process wrote: FindMissing says present, get and read return its bytes', async () => {
    const [a, b] = [await open(0, 16 * 1024 * 1024), await open(1, 16 * 1024 * 1024)];
    const small = blob('written through A');
    const large = patterned(3 * 1024 * 1024 + 5);
    await a.put(small.digest, small.data);
    await a.put(large.digest, large.data);

    await expect(b.findMissing([small.digest, large.digest])).resolves.toEqual([]);
    expect(Buffer.from(await b.get(small.digest)).toString()).toBe('written through A');
    expect(Buffer.compare(await collect(b.read(large.digest)), large.data)).toBe(0);
    // Found on disk, remembered as A's: not counted in B's share.
    expect(b.blobCount).toBe(0);
    expect(b.sizeBytes).toBe(0);
  });

  it('does not take over a blob another process wrote when asked to store it again', async () => {
    const [a, b] = [await open(0), await open(1)];
    const x = blob('same bytes twice');
    await a.put(x.digest, x.data);
    const inode = (await fs.stat(filePath(dir, x.digest))).ino;
    await b.put(x.digest, x.data);
    expect((await fs.stat(filePath(dir, x.digest))).ino).toBe(inode);
    expect([a.blobCount, b.blobCount]).toEqual([1, 0]);
    expect(await fs.readdir(path.join(dir, '.tmp-p1'))).toEqual([]);
  });

  it('evicts only its own blobs, within its share: a blob the other process wrote survives, and the directory stays under max_size_bytes', async () => {
    const max = 64 * 1024;
    const [a, b] = [await open(0, max), await open(1, max)];
    // B writes one blob and reports it present; A then writes far more than the whole capacity.
    const keep = patterned(8 * 1024, 1);
    await b.put(keep.digest, keep.data);
    await expect(b.findMissing([keep.digest])).resolves.toEqual([]);
    const written: Digest[] = [];
    for (let i = 0; i < 40; i++) {
      const { data, digest } = patterned(4 * 1024, 100 + i);
      await a.put(digest, data);
      await expect(a.findMissing([keep.digest])).resolves.toEqual([]); // A finds it too, as B's
      written.push(digest);
    }
    await a.close();
    expect(a.sizeBytes).toBeLessThanOrEqual(max / 2);
    expect(a.evictedBlobCount).toBeGreaterThan(0);
    await expect(b.findMissing([keep.digest])).resolves.toEqual([]);
    expect(Buffer.compare(await b.get(keep.digest), keep.data)).toBe(0);
    expect(await bytesOnDisk(dir)).toBeLessThanOrEqual(max);
    // And B, told nothing, answers missing for what A evicted (it asks the disk again every time).
    const evicted = written[0]!;
    await expect(b.findMissing([evicted])).resolves.toEqual([evicted]);
    expectCode(await rejectionOf(b.get(evicted)), Code.NOT_FOUND);
  });

  it('forgets a blob of the other process once that process evicted it, though it had found it before', async () => {
    const max = 16 * 1024;
    const [a, b] = [await open(0, max), await open(1, max)];
    const first = patterned(6 * 1024, 2);
    await a.put(first.digest, first.data);
    await expect(b.findMissing([first.digest])).resolves.toEqual([]);
    for (let i = 0; i < 3; i++) {
      const next = patterned(6 * 1024, 10 + i);
      await a.put(next.digest, next.data);
    }
    await a.close();
    await expect(b.findMissing([first.digest])).resolves.toEqual([first.digest]);
  });

  it('splits the blobs already on disk between the processes at open, so that each counts its share once', async () => {
    const one = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 1024 * 1024, sizesFromFileNames: true });
    const digests: Digest[] = [];
    for (let i = 0; i < 50; i++) {
      const x = blob(`existing ${i}`);
      await one.put(x.digest, x.data);
      digests.push(x.digest);
    }
    await one.close();
    const [a, b] = [await open(0), await open(1)];
    expect(a.blobCount + b.blobCount).toBe(50);
    expect(a.blobCount).toBeGreaterThan(0);
    expect(b.blobCount).toBeGreaterThan(0);
    await expect(a.findMissing(digests)).resolves.toEqual([]);
    await expect(b.findMissing(digests)).resolves.toEqual([]);
  });

  it('keeps the other process\'s uploads in progress when it opens (each has its own temp directory)', async () => {
    await open(0);
    const inProgress = path.join(dir, '.tmp-p0', 'upload-in-progress');
    await fs.writeFile(inProgress, 'partial');
    await open(1);
    await expect(fs.readFile(inProgress, 'utf8')).resolves.toBe('partial');
  });

  it('action cache: an entry rewritten by the other process is read with its new size', async () => {
    const [a, b] = [await open(0, 1024 * 1024, false), await open(1, 1024 * 1024, false)];
    const key = Digest.ofBytes(bytes('action'));
    await a.put(key, bytes('short'));
    expect(Buffer.from(await b.get(key)).toString()).toBe('short');
    await b.put(key, bytes('a longer result'));
    expect(Buffer.from(await a.get(key)).toString()).toBe('a longer result');
    expect(Buffer.from(await collect(b.read(key)))).toEqual(Buffer.from('a longer result'));
  });

  it('refuses a share that does not exist', async () => {
    await expect(FilesystemBlobStore.open({ path: dir, maxSizeBytes: 1024, shared: { processes: 2, rank: 2 } })).rejects.toThrow(/not a valid share/);
  });
});

function patterned(sizeBytes: number, seed?: number): { data: Uint8Array; digest: Digest } {
  const data = patternBytes(sizeBytes, seed);
  return { data, digest: Digest.ofBytes(data) };
}

function filePath(dir: string, digest: Digest): string {
  return path.join(dir, '_', 'sha256', digest.hash.slice(0, 2), `${digest.hash}-${digest.sizeBytes}`);
}

/**
 * Parked uploads beyond `maxParkedMemoryBytes` are spilled: their store writes out and drops its
 * buffers (an empty chunk, blob-store.ts). Over a real FilesystemBlobStore: the bytes of a spilled
 * upload are in its temporary file, the upload resumes and finishes with the right blob, and a
 * spilled upload with a wrong hash is still refused.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FilesystemBlobStore } from '../../../src/lib/blobstore/filesystem-blob-store.js';
import { VerifyingBlobStore } from '../../../src/lib/blobstore/verifying-blob-store.js';
import { ResumableUploads } from '../../../src/lib/bytestream/resumable-uploads.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, type StatusError } from '../../../src/lib/errors/status-error.js';
import type { bytestream } from '../../../src/lib/proto/index.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { silentLogger } from '../../../src/lib/util/logger.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup(maxParkedMemoryBytes: number) {
  const dir = await mkdtemp(join(tmpdir(), 'bzutil-parked-'));
  dirs.push(dir);
  const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 1 << 30 });
  const uploads = new ResumableUploads({ contentAddressableStorage: new VerifyingBlobStore(store), clock: new FakeClock(0), logger: silentLogger, maxParkedMemoryBytes });
  return { dir, store, uploads };
}

function blob(sizeBytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(sizeBytes);
  for (let i = 0; i < sizeBytes; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

function message(name: string, data: Uint8Array, offset: number, end: number, finishWrite = false): bytestream.WriteRequest {
  return { resourceName: name, writeOffset: offset, data: data.subarray(offset, end), finishWrite } as bytestream.WriteRequest;
}

async function* none(): AsyncGenerator<bytestream.WriteRequest> {}

/** Bytes in the store's temporary files (uploads in progress), found by walking its directory. */
async function temporaryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && /-\d+\.[0-9a-f-]{36}$/.test(entry.name)) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

describe('ResumableUploads: the parked memory budget', () => {
  it('keeps parked buffers within the budget, spills the rest to disk, and finishes every upload intact', async () => {
    const { dir, store, uploads } = await setup(400 * 1024);
    const PART = 300 * 1024;
    const blobs = [blob(1024 * 1024, 1), blob(1024 * 1024, 2), blob(1024 * 1024, 3)];
    const targets = blobs.map((data, i) => {
      const digest = Digest.ofBytes(data);
      return { resourceName: `uploads/u${i}/blobs/${digest.hash}/${digest.sizeBytes}`, digest, uploadId: `u${i}`, data };
    });
    // Three uploads park after 300 KiB each: the first fits the 400 KiB budget, the others spill.
    for (const t of targets) expect(await uploads.write(t, message(t.resourceName, t.data, 0, PART), none())).toEqual({ committedSize: PART });
    expect(uploads.parkedMemoryBytes).toBe(PART);
    // The spilled ones' bytes are on disk already (the stores' batches were written out).
    await expect.poll(() => temporaryBytes(dir)).toBeGreaterThanOrEqual(2 * PART);

    // Resumed, each finishes with exactly its bytes.
    for (const t of targets) {
      expect(await uploads.write(t, message(t.resourceName, t.data, PART, t.data.length, true), none())).toEqual({ committedSize: t.data.length });
      expect(Buffer.from(await store.get(t.digest)).equals(Buffer.from(t.data))).toBe(true);
    }
    expect(uploads.parkedMemoryBytes).toBe(0);
    expect(uploads.size).toBe(0);
  });

  it('still refuses a spilled upload whose bytes do not match its digest', async () => {
    const { store, uploads } = await setup(0);
    const data = blob(512 * 1024, 7);
    const claimed = Digest.ofBytes(blob(512 * 1024, 8));
    const t = { resourceName: `uploads/bad/blobs/${claimed.hash}/${claimed.sizeBytes}`, digest: claimed, uploadId: 'bad' };
    await uploads.write(t, message(t.resourceName, data, 0, 100 * 1024), none());
    const err = (await uploads.write(t, message(t.resourceName, data, 100 * 1024, data.length, true), none()).catch((e: unknown) => e)) as StatusError;
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(await store.findMissing([claimed])).toEqual([claimed]);
  });
});

import { describe, expect, it } from 'vitest';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { VerifyingBlobStore } from '../../../src/lib/blobstore/verifying-blob-store.js';
import { ResumableUploads } from '../../../src/lib/bytestream/resumable-uploads.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, type StatusError } from '../../../src/lib/errors/status-error.js';
import type { bytestream } from '../../../src/lib/proto/index.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { silentLogger } from '../../../src/lib/util/logger.js';

const text = 'resumable upload contents';
const data = new TextEncoder().encode(text);
const digest = Digest.ofBytes(data);
const resourceName = `uploads/u1/blobs/${digest.hash}/${digest.sizeBytes}`;
const target = { resourceName, digest, uploadId: 'u1' };

function setup(idleTimeoutMs = 1000) {
  const store = new MemoryBlobStore({ maxSizeBytes: 1 << 20 });
  const clock = new FakeClock(0);
  const uploads = new ResumableUploads({ contentAddressableStorage: new VerifyingBlobStore(store), clock, logger: silentLogger, idleTimeoutMs });
  return { store, clock, uploads };
}

function message(offset: number, end: number, finishWrite = false): bytestream.WriteRequest {
  return { resourceName, writeOffset: offset, data: data.subarray(offset, end), finishWrite } as bytestream.WriteRequest;
}

async function* none(): AsyncGenerator<bytestream.WriteRequest> {}

describe('ResumableUploads', () => {
  it('parks an upload the client half-closed, reports its progress, and finishes it on resumption', async () => {
    const { store, uploads } = setup();
    expect(await uploads.write(target, message(0, 10), none())).toEqual({ committedSize: 10 });
    expect(uploads.size).toBe(1);
    expect(await uploads.queryWriteStatus(resourceName, digest, 'u1')).toEqual({ committedSize: 10, complete: false });

    expect(await uploads.write(target, message(10, data.length, true), none())).toEqual({ committedSize: data.length });
    expect(new TextDecoder().decode(await store.get(digest))).toBe(text);
    expect(await uploads.queryWriteStatus(resourceName, digest, undefined)).toEqual({ committedSize: data.length, complete: true });
    expect(uploads.size).toBe(0);
  });

  it('refuses a resumption at the wrong offset and one of an unknown upload', async () => {
    const { uploads } = setup();
    await uploads.write(target, message(0, 10), none());
    const wrong = (await uploads.write(target, message(12, 14), none()).catch((e: unknown) => e)) as StatusError;
    expect(wrong.code).toBe(Code.INVALID_ARGUMENT);
    expect(wrong.message).toContain('does not match the 10 bytes received');
    const unknown = (await uploads.write({ ...target, uploadId: 'u2' }, message(5, 8), none()).catch((e: unknown) => e)) as StatusError;
    expect(unknown.message).toContain('continues no upload');
  });

  it('aborts a parked upload nobody resumes, leaving nothing stored', async () => {
    const { store, clock, uploads } = setup(1000);
    await uploads.write(target, message(0, 10), none());
    await clock.advance(1000);
    expect(uploads.size).toBe(0);
    const err = (await uploads.queryWriteStatus(resourceName, digest, 'u1').catch((e: unknown) => e)) as StatusError;
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(await store.findMissing([digest])).toEqual([digest]);
  });

  it('completes at once when the blob is already stored, without reading the stream', async () => {
    const { store, uploads } = setup();
    await store.put(digest, data);
    let read = false;
    const rest = (async function* () {
      read = true;
      yield message(10, data.length, true);
    })();
    expect(await uploads.write(target, message(0, 10), rest)).toEqual({ committedSize: data.length });
    expect(read).toBe(false);
  });
});

import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import type { bytestream } from '../../../src/lib/proto/index.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { READ_CHUNK_SIZE_BYTES } from '../../../src/server/services/byte-stream-service.js';
import {
  type Harness,
  concat,
  eventually,
  expectStatus,
  openWrite,
  pseudoRandomBytes,
  readStream,
  reapi,
  startHarness,
  unary,
  uploadBlobs,
  writeBlob,
} from './harness.js';

const CHUNK = 16 * 1024;

describe('apiserver ByteStream', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  const readBlob = async (resourceName: string, readOffset = 0, readLimit = 0) => {
    // Zero offsets and limits are left unset, as Bazel sends them.
    const msgs = await readStream<bytestream.ReadResponse>(h!.byteStream, 'read', {
      resourceName,
      ...(readOffset ? { readOffset } : {}),
      ...(readLimit ? { readLimit } : {}),
    });
    return { data: concat(msgs.map((m) => m.data)), chunkSizes: msgs.map((m) => m.data.length) };
  };
  const isMissing = async (d: Digest) =>
    (await unary<reapi.FindMissingBlobsResponse>(h!.cas, 'findMissingBlobs', { instanceName: d.instanceName, blobDigests: [d.toProto()] }))
      .missingBlobDigests.length === 1;
  const queryWriteStatus = (resourceName: string) => unary<bytestream.QueryWriteStatusResponse>(h!.byteStream, 'queryWriteStatus', { resourceName });

  it('stores a blob written in 16 KiB chunks and reads it back in chunks of at most 1 MiB', async () => {
    h = await startHarness();
    const data = pseudoRandomBytes(2.5 * 1024 * 1024 + 123);
    const digest = Digest.ofBytes(data);
    const res = await writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID()), data);
    expect(res.committedSize).toBe(data.length);

    const whole = await readBlob(digest.toByteStreamReadPath());
    expect(Buffer.from(whole.data).equals(Buffer.from(data))).toBe(true);
    expect(Math.max(...whole.chunkSizes)).toBeLessThanOrEqual(READ_CHUNK_SIZE_BYTES);
    expect(whole.chunkSizes.length).toBeGreaterThanOrEqual(3);
  });

  it('reads a range with read_offset and read_limit', async () => {
    h = await startHarness();
    const data = pseudoRandomBytes(100_000, 7);
    const digest = Digest.ofBytes(data);
    await writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID()), data);
    const part = await readBlob(digest.toByteStreamReadPath(), 40_000, 1000);
    expect(Buffer.from(part.data).equals(Buffer.from(data.subarray(40_000, 41_000)))).toBe(true);
    const tail = await readBlob(digest.toByteStreamReadPath(), 99_990);
    expect(Buffer.from(tail.data).equals(Buffer.from(data.subarray(99_990)))).toBe(true);
    const atEnd = await readBlob(digest.toByteStreamReadPath(), 100_000);
    expect(atEnd.data.length).toBe(0);
  });

  it('answers OUT_OF_RANGE for a read_offset past the end or negative, INVALID_ARGUMENT for a negative limit', async () => {
    h = await startHarness();
    const [d] = await uploadBlobs(h, [new TextEncoder().encode('short')]);
    await expectStatus(readBlob(d!.toByteStreamReadPath(), 6), Code.OUT_OF_RANGE);
    const negOffset = await expectStatus(readBlob(d!.toByteStreamReadPath(), -1), Code.OUT_OF_RANGE);
    expect(negOffset.message).toContain('read_offset -1 is negative');
    const negLimit = await expectStatus(readBlob(d!.toByteStreamReadPath(), 0, -5), Code.INVALID_ARGUMENT);
    expect(negLimit.fieldViolations()[0]?.field).toBe('read_limit');
  });

  it('answers NOT_FOUND when reading an absent blob', async () => {
    h = await startHarness();
    const d = Digest.ofBytes(new TextEncoder().encode('absent'));
    const err = await expectStatus(readBlob(d.toByteStreamReadPath()), Code.NOT_FOUND);
    expect(err.message).toContain(d.toString());
  });

  it('rejects a blob whose content does not match its digest and leaves nothing visible', async () => {
    h = await startHarness();
    const data = pseudoRandomBytes(50_000, 3);
    const wrong = Digest.create('', 'sha256', Digest.ofBytes(pseudoRandomBytes(50_000, 4)).hash, data.length);
    const err = await expectStatus(writeBlob(h.byteStream, wrong.toByteStreamWritePath(randomUUID()), data), Code.INVALID_ARGUMENT);
    expect(err.fieldViolations().length).toBeGreaterThan(0);
    expect(err.message).toContain(wrong.hash);
    expect(await isMissing(wrong)).toBe(true);
    await expectStatus(readBlob(wrong.toByteStreamReadPath()), Code.NOT_FOUND);
  });

  it('stores a whole blob sent in one message, and refuses one whose content does not match', async () => {
    h = await startHarness();
    const data = pseudoRandomBytes(3_000, 11);
    const digest = Digest.ofBytes(data);
    const name = digest.toByteStreamWritePath(randomUUID());
    expect((await writeBlob(h.byteStream, name, data)).committedSize).toBe(data.length);
    expect((await readBlob(digest.toByteStreamReadPath())).data).toEqual(data);
    expect(await queryWriteStatus(name)).toMatchObject({ committedSize: data.length, complete: true });

    const other = pseudoRandomBytes(3_000, 12);
    const wrong = Digest.create('', 'sha256', Digest.ofBytes(other).hash, data.length);
    const err = await expectStatus(writeBlob(h.byteStream, wrong.toByteStreamWritePath(randomUUID()), data), Code.INVALID_ARGUMENT);
    expect(err.fieldViolations()[0]?.field).toBe('digest.hash');
    expect(await isMissing(wrong)).toBe(true);
  });

  it('rejects more bytes than the resource name declares', async () => {
    h = await startHarness();
    const data = pseudoRandomBytes(40_000, 5);
    const declared = Digest.create('', 'sha256', Digest.ofBytes(data).hash, 30_000);
    const name = declared.toByteStreamWritePath(randomUUID());
    const err = await expectStatus(writeBlob(h.byteStream, name, data), Code.INVALID_ARGUMENT);
    expect(err.fieldViolations()[0]?.field).toBe('data');
    expect(await isMissing(declared)).toBe(true);
    await expectStatus(queryWriteStatus(name), Code.NOT_FOUND);
  });

  it('completes a write of an existing blob at once, without waiting for the rest of the stream', async () => {
    h = await startHarness();
    const data = pseudoRandomBytes(200_000, 11);
    const digest = Digest.ofBytes(data);
    await writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID()), data);

    const { call, response } = openWrite(h.byteStream);
    call.write({ resourceName: digest.toByteStreamWritePath(randomUUID()), writeOffset: 0, data: data.subarray(0, CHUNK) });
    // The stream is still open: the answer arrives after one message.
    const res = await response;
    expect(res.committedSize).toBe(data.length);
    call.end();
  });

  it('keeps an upload whose stream ended without finish_write, reports it and lets a new Write resume it', async () => {
    h = await startHarness();
    const data = pseudoRandomBytes(5 * CHUNK + 1000, 13);
    const digest = Digest.ofBytes(data);
    const name = digest.toByteStreamWritePath(randomUUID());

    // First attempt: three chunks, then the client half-closes without finish_write.
    const { call, response } = openWrite(h.byteStream);
    for (let i = 0; i < 3; i++) call.write({ resourceName: name, writeOffset: i * CHUNK, data: data.subarray(i * CHUNK, (i + 1) * CHUNK) });
    call.end();
    expect((await response).committedSize).toBe(3 * CHUNK);

    const status = await queryWriteStatus(name);
    expect(status.committedSize).toBe(3 * CHUNK);
    expect(status.complete).toBe(false);
    expect(await isMissing(digest)).toBe(true);

    // Resuming at the wrong offset is refused without harming the upload.
    const wrongOffset = await expectStatus(writeBlob(h.byteStream, name, data, { startOffset: 2 * CHUNK }), Code.INVALID_ARGUMENT);
    expect(wrongOffset.fieldViolations()[0]?.field).toBe('write_offset');

    const res = await writeBlob(h.byteStream, name, data, { startOffset: status.committedSize });
    expect(res.committedSize).toBe(data.length);
    const back = await readBlob(digest.toByteStreamReadPath());
    expect(Buffer.from(back.data).equals(Buffer.from(data))).toBe(true);
    expect(await queryWriteStatus(name)).toMatchObject({ committedSize: data.length, complete: true });
  });

  it('resumes an upload after the client cancelled its stream, from the committed size the server reports', async () => {
    h = await startHarness();
    const data = pseudoRandomBytes(8 * CHUNK, 17);
    const digest = Digest.ofBytes(data);
    const name = digest.toByteStreamWritePath(randomUUID());

    const { call, response } = openWrite(h.byteStream);
    for (let i = 0; i < 4; i++) call.write({ resourceName: name, writeOffset: i * CHUNK, data: data.subarray(i * CHUNK, (i + 1) * CHUNK) });
    // Let the server receive at least the first chunk before the connection "breaks".
    await eventually(async () => (await queryWriteStatus(name).catch(() => ({ committedSize: 0 }))).committedSize > 0, 'the server received data');
    call.cancel();
    await expectStatus(response, Code.CANCELLED);

    // Like Bazel: ask where to resume, then continue; retry while the server still sees the old stream.
    let res: bytestream.WriteResponse | undefined;
    await eventually(async () => {
      const { committedSize } = await queryWriteStatus(name);
      expect(committedSize % CHUNK).toBe(0);
      try {
        res = await writeBlob(h!.byteStream, name, data, { startOffset: committedSize });
        return true;
      } catch (err) {
        if (err instanceof StatusError && err.code === Code.ABORTED) return false;
        throw err;
      }
    }, 'the upload was resumed');
    expect(res!.committedSize).toBe(data.length);
    expect(await isMissing(digest)).toBe(false);
  });

  it('aborts an interrupted upload nobody resumes within the idle timeout', async () => {
    const clock = new FakeClock(1_000_000);
    h = await startHarness({ clock, uploadIdleTimeoutMs: 60_000 });
    const data = pseudoRandomBytes(4 * CHUNK, 19);
    const digest = Digest.ofBytes(data);
    const name = digest.toByteStreamWritePath(randomUUID());
    const { call, response } = openWrite(h.byteStream);
    call.write({ resourceName: name, writeOffset: 0, data: data.subarray(0, CHUNK) });
    call.end();
    expect((await response).committedSize).toBe(CHUNK);

    await clock.advance(59_999);
    expect((await queryWriteStatus(name)).committedSize).toBe(CHUNK);
    await clock.advance(1);
    await expectStatus(queryWriteStatus(name), Code.NOT_FOUND);
    const err = await expectStatus(writeBlob(h.byteStream, name, data, { startOffset: CHUNK }), Code.INVALID_ARGUMENT);
    expect(err.fieldViolations()[0]?.field).toBe('write_offset');
    expect(await isMissing(digest)).toBe(true);
  });

  it('restarts an upload from scratch when a Write begins again at offset 0', async () => {
    h = await startHarness();
    const data = pseudoRandomBytes(3 * CHUNK, 23);
    const digest = Digest.ofBytes(data);
    const name = digest.toByteStreamWritePath(randomUUID());
    const { call, response } = openWrite(h.byteStream);
    call.write({ resourceName: name, writeOffset: 0, data: data.subarray(0, CHUNK) });
    call.end();
    await response;
    expect((await writeBlob(h.byteStream, name, data)).committedSize).toBe(data.length);
    expect(await isMissing(digest)).toBe(false);
  });

  it('answers QueryWriteStatus with NOT_FOUND for an unknown upload', async () => {
    h = await startHarness();
    const d = Digest.ofBytes(new TextEncoder().encode('unknown upload'));
    await expectStatus(queryWriteStatus(d.toByteStreamWritePath(randomUUID())), Code.NOT_FOUND);
  });

  it('rejects malformed resource names and unsupported compressors with BadRequest details', async () => {
    h = await startHarness();
    const bad = await expectStatus(readBlob('blobs/xyz/12'), Code.INVALID_ARGUMENT);
    expect(bad.fieldViolations()[0]?.field).toMatch(/^resource_name/);
    const noBlobs = await expectStatus(readBlob('main/things/abc'), Code.INVALID_ARGUMENT);
    expect(noBlobs.fieldViolations()[0]?.field).toBe('resource_name');
    const d = Digest.ofBytes(new TextEncoder().encode('zz'));
    const compressed = await expectStatus(readBlob(d.toByteStreamReadPath('brotli')), Code.INVALID_ARGUMENT);
    expect(compressed.message).toContain('brotli');
    expect(compressed.fieldViolations()[0]?.field).toBe('resource_name');
    const badWrite = await expectStatus(writeBlob(h.byteStream, d.toByteStreamReadPath(), new TextEncoder().encode('zz')), Code.INVALID_ARGUMENT);
    expect(badWrite.fieldViolations()[0]?.field).toBe('resource_name');
    const badSize = await expectStatus(writeBlob(h.byteStream, `uploads/${randomUUID()}/blobs/${d.hash}/-2`, new Uint8Array(2)), Code.INVALID_ARGUMENT);
    expect(badSize.fieldViolations()[0]?.field).toMatch(/^resource_name/);
  });

  it('rejects a Write whose first message names no resource, and one that changes resource mid-stream', async () => {
    h = await startHarness();
    const { call, response } = openWrite(h.byteStream);
    call.write({ data: new Uint8Array(4) });
    call.end();
    const err = await expectStatus(response, Code.INVALID_ARGUMENT);
    expect(err.fieldViolations()[0]?.field).toBe('resource_name');

    const data = pseudoRandomBytes(2 * CHUNK, 37);
    const d = Digest.ofBytes(data);
    const name = d.toByteStreamWritePath(randomUUID());
    const second = openWrite(h.byteStream);
    second.call.write({ resourceName: name, data: data.subarray(0, CHUNK) });
    second.call.write({ resourceName: Digest.ofBytes(data.subarray(0, 10)).toByteStreamWritePath(randomUUID()), writeOffset: CHUNK, data: data.subarray(CHUNK) });
    second.call.end();
    const changed = await expectStatus(second.response, Code.INVALID_ARGUMENT);
    expect(changed.fieldViolations()[0]?.field).toBe('resource_name');
    expect(await isMissing(d)).toBe(true);
  });

  it('keeps instance names apart with storage.cas_instance_scoping per_instance', async () => {
    h = await startHarness({ storage: { cas: { memory: { max_size_bytes: 16 * 1024 * 1024 } }, action_cache: { memory: { max_size_bytes: 1024 * 1024 } }, cas_instance_scoping: 'per_instance' } });
    const data = pseudoRandomBytes(1000, 29);
    const inX = Digest.ofBytes(data, { instanceName: 'x/y' });
    await writeBlob(h.byteStream, inX.toByteStreamWritePath(randomUUID()), data);
    expect((await readBlob(inX.toByteStreamReadPath())).data.length).toBe(1000);
    await expectStatus(readBlob(inX.withInstanceName('z').toByteStreamReadPath()), Code.NOT_FOUND);
  });
});

/**
 * Compressed blob transfer against a real apiserver, the way a REAPI 2.2+ client uses it:
 * ByteStream `compressed-blobs/{zstd,deflate}/...` reads and writes and the `compressor` fields of
 * the batch calls. Digests are always of the uncompressed bytes, and the server verifies them.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { compressBytes, decompressBytes } from '../../../src/lib/compression/codec.js';
import { compressorToProto, TRANSFER_COMPRESSORS, type TransferCompressor } from '../../../src/lib/compression/compressor.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import type { bytestream } from '../../../src/lib/proto/index.js';
import { type Harness, concat, expectStatus, pseudoRandomBytes, readStream, reapi, startHarness, unary, writeBlob } from './harness.js';
import { sourceLikeBytes } from '../../helpers/source-like.js';


describe.each(TRANSFER_COMPRESSORS)('apiserver compressed transfers (%s)', (compressor: TransferCompressor) => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  const read = async (resourceName: string, readOffset = 0, readLimit = 0) => {
    const msgs = await readStream<bytestream.ReadResponse>(h!.byteStream, 'read', {
      resourceName,
      ...(readOffset ? { readOffset } : {}),
      ...(readLimit ? { readLimit } : {}),
    });
    return concat(msgs.map((m) => m.data));
  };
  const isStored = async (d: Digest) =>
    (await unary<reapi.FindMissingBlobsResponse>(h!.cas, 'findMissingBlobs', { blobDigests: [d.toProto()] })).missingBlobDigests.length === 0;

  it('writes a compressed stream in chunks and reads it back compressed and plain, byte-identical', async () => {
    h = await startHarness();
    const data = sourceLikeBytes(3 * 1024 * 1024 + 77);
    const digest = Digest.ofBytes(data);
    const compressed = await compressBytes(compressor, data);
    expect(compressed.length).toBeLessThan(data.length / 3);
    const res = await writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID(), compressor), compressed, { chunkSizeBytes: 64 * 1024 });
    // Compressed uploads commit the compressed bytes received.
    expect(Number(res.committedSize)).toBe(compressed.length);
    expect(await isStored(digest)).toBe(true);

    expect(Buffer.from(await read(digest.toByteStreamReadPath())).equals(Buffer.from(data))).toBe(true);
    const wire = await read(digest.toByteStreamReadPath(compressor));
    expect(wire.length).toBeLessThan(data.length / 3);
    const restored = await decompressBytes(compressor, wire, { maxOutputBytes: data.length });
    expect(Buffer.from(restored).equals(Buffer.from(data))).toBe(true);
  });

  it('reads a compressed range from read_offset (into the uncompressed bytes) and refuses a read_limit', async () => {
    h = await startHarness();
    const data = sourceLikeBytes(200_000, 3);
    const digest = Digest.ofBytes(data);
    await writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID()), data);
    const tail = await decompressBytes(compressor, await read(digest.toByteStreamReadPath(compressor), 150_000), { maxOutputBytes: 50_000 });
    expect(Buffer.from(tail).equals(Buffer.from(data.subarray(150_000)))).toBe(true);
    const err = await expectStatus(read(digest.toByteStreamReadPath(compressor), 0, 10), Code.INVALID_ARGUMENT);
    expect(err.fieldViolations()[0]?.field).toBe('read_limit');
  });

  it('answers an upload of a blob already stored with committed_size -1', async () => {
    h = await startHarness();
    const data = sourceLikeBytes(50_000, 4);
    const digest = Digest.ofBytes(data);
    await writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID()), data);
    const res = await writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID(), compressor), await compressBytes(compressor, data));
    expect(Number(res.committedSize)).toBe(-1);
  });

  it('refuses a decompression bomb (output beyond the declared size) and stores nothing', async () => {
    h = await startHarness();
    // 32 MiB of zeros, declared as a 1 MiB blob: the server must stop at 1 MiB.
    const huge = new Uint8Array(32 * 1024 * 1024);
    const declared = Digest.ofBytes(huge.subarray(0, 1024 * 1024));
    const bomb = await compressBytes(compressor, huge);
    const err = await expectStatus(writeBlob(h.byteStream, declared.toByteStreamWritePath(randomUUID(), compressor), bomb, { chunkSizeBytes: 4096 }), Code.INVALID_ARGUMENT);
    expect(err.message).toMatch(/more than the declared 1048576 bytes/);
    expect(await isStored(declared)).toBe(false);
  });

  it('refuses a stream that decompresses to other bytes (digest mismatch) and stores nothing', async () => {
    h = await startHarness();
    const data = sourceLikeBytes(100_000, 5);
    const claimed = Digest.ofBytes(data);
    const other = sourceLikeBytes(100_000, 6);
    const err = await expectStatus(writeBlob(h.byteStream, claimed.toByteStreamWritePath(randomUUID(), compressor), await compressBytes(compressor, other)), Code.INVALID_ARGUMENT);
    expect(err.message).toContain(claimed.hash);
    expect(await isStored(claimed)).toBe(false);
  });

  it('refuses a stream that decompresses to fewer bytes than declared (wrong size) and a corrupt stream', async () => {
    h = await startHarness();
    const data = sourceLikeBytes(100_000, 7);
    const digest = Digest.ofBytes(data);
    const short = await compressBytes(compressor, data.subarray(0, 90_000));
    await expectStatus(writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID(), compressor), short), Code.INVALID_ARGUMENT);
    const garbage = pseudoRandomBytes(5000, 9);
    await expectStatus(writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID(), compressor), garbage), Code.INVALID_ARGUMENT);
    expect(await isStored(digest)).toBe(false);
  });

  it('takes compressed blobs in BatchUpdateBlobs and returns them compressed from BatchReadBlobs', async () => {
    h = await startHarness();
    const blobs = [sourceLikeBytes(20_000, 1), sourceLikeBytes(30_000, 2), new TextEncoder().encode('tiny')];
    const digests = blobs.map((b) => Digest.ofBytes(b));
    const value = compressorToProto(compressor);
    const up = await unary<reapi.BatchUpdateBlobsResponse>(h.cas, 'batchUpdateBlobs', {
      requests: await Promise.all(blobs.map(async (b, i) => ({ digest: digests[i]!.toProto(), data: await compressBytes(compressor, b), compressor: value }))),
    });
    expect(up.responses.map((r) => r.status?.code ?? 0)).toEqual([0, 0, 0]);

    const plain = await unary<reapi.BatchReadBlobsResponse>(h.cas, 'batchReadBlobs', { digests: digests.map((d) => d.toProto()) });
    plain.responses.forEach((r, i) => {
      expect(r.compressor ?? 0).toBe(reapi.Compressor.Value.IDENTITY);
      expect(Buffer.from(r.data).equals(Buffer.from(blobs[i]!))).toBe(true);
    });

    const packed = await unary<reapi.BatchReadBlobsResponse>(h.cas, 'batchReadBlobs', {
      digests: digests.map((d) => d.toProto()),
      acceptableCompressors: [reapi.Compressor.Value.BROTLI, value],
    });
    for (const [i, r] of packed.responses.entries()) {
      expect(r.status?.code ?? 0).toBe(0);
      const blob = blobs[i]!;
      if (blob.length > 1000) {
        expect(r.compressor).toBe(value);
        expect(r.data.length).toBeLessThan(blob.length);
      }
      const data = r.compressor === value ? await decompressBytes(compressor, r.data, { maxOutputBytes: blob.length }) : r.data;
      expect(Buffer.from(data).equals(Buffer.from(blob))).toBe(true);
    }
  });

  it('fails only the bad blobs of a compressed batch: a bomb, a mismatch', async () => {
    h = await startHarness();
    const good = sourceLikeBytes(10_000, 11);
    const value = compressorToProto(compressor);
    const bombDigest = Digest.ofBytes(new Uint8Array(1000));
    const mismatched = Digest.ofBytes(sourceLikeBytes(10_000, 12));
    const res = await unary<reapi.BatchUpdateBlobsResponse>(h.cas, 'batchUpdateBlobs', {
      requests: [
        { digest: Digest.ofBytes(good).toProto(), data: await compressBytes(compressor, good), compressor: value },
        { digest: bombDigest.toProto(), data: await compressBytes(compressor, new Uint8Array(10 * 1024 * 1024)), compressor: value },
        { digest: mismatched.toProto(), data: await compressBytes(compressor, good), compressor: value },
      ],
    });
    expect(res.responses.map((r) => r.status?.code ?? 0)).toEqual([Code.OK, Code.INVALID_ARGUMENT, Code.INVALID_ARGUMENT]);
    expect(res.responses[1]!.status?.message).toMatch(/more than the declared 1000 bytes/);
  });
});

describe('apiserver with compression turned off', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('refuses compressed resource names and batch compressors it does not offer', async () => {
    h = await startHarness({ capabilities: { compressors: [] } });
    const data = sourceLikeBytes(10_000);
    const digest = Digest.ofBytes(data);
    const err = await expectStatus(writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID(), 'zstd'), await compressBytes('zstd', data)), Code.INVALID_ARGUMENT);
    expect(err.message).toContain('zstd');
    const res = await unary<reapi.BatchUpdateBlobsResponse>(h.cas, 'batchUpdateBlobs', {
      requests: [{ digest: digest.toProto(), data: await compressBytes('zstd', data), compressor: reapi.Compressor.Value.ZSTD }],
    });
    expect(res.responses[0]!.status?.code).toBe(Code.INVALID_ARGUMENT);
    // BatchReadBlobs falls back to identity when nothing acceptable is served.
    await unary(h.cas, 'batchUpdateBlobs', { requests: [{ digest: digest.toProto(), data }] });
    const read = await unary<reapi.BatchReadBlobsResponse>(h.cas, 'batchReadBlobs', { digests: [digest.toProto()], acceptableCompressors: [reapi.Compressor.Value.ZSTD] });
    expect(read.responses[0]!.compressor ?? 0).toBe(reapi.Compressor.Value.IDENTITY);
    expect(Buffer.from(read.responses[0]!.data).equals(Buffer.from(data))).toBe(true);
  });
});

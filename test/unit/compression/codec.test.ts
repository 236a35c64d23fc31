import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { compressBytes, compressChunks, decompressBytes, decompressChunks } from '../../../src/lib/compression/codec.js';
import { TRANSFER_COMPRESSORS, type TransferCompressor } from '../../../src/lib/compression/compressor.js';
import { zstdBinding } from '../../../src/lib/compression/zstd-binding.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { sourceLikeBytes } from '../../helpers/source-like.js';


async function* chunked(data: Uint8Array, chunkBytes: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += chunkBytes) yield data.subarray(i, i + chunkBytes);
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<{ data: Buffer; chunks: number; largestChunk: number }> {
  const parts: Uint8Array[] = [];
  let largestChunk = 0;
  for await (const c of source) {
    parts.push(c);
    largestChunk = Math.max(largestChunk, c.length);
  }
  return { data: Buffer.concat(parts), chunks: parts.length, largestChunk };
}

async function rejection(p: Promise<unknown>): Promise<StatusError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StatusError);
  return err as StatusError;
}

describe.each(TRANSFER_COMPRESSORS)('%s codec', (compressor: TransferCompressor) => {
  it('round-trips a multi-chunk stream and actually compresses source-like data', async () => {
    const original = sourceLikeBytes(3 * 1024 * 1024 + 123);
    const compressed = await collect(compressChunks(compressor, chunked(original, 64 * 1024)));
    expect(compressed.data.length).toBeLessThan(original.length / 3);
    const restored = await collect(decompressChunks(compressor, chunked(compressed.data, 1000), { maxOutputBytes: original.length }));
    expect(restored.data.equals(original)).toBe(true);
  });

  it('round-trips bytes in memory, the empty blob included', async () => {
    for (const original of [Buffer.alloc(0), Buffer.from('a'), sourceLikeBytes(100_000)]) {
      const compressed = await compressBytes(compressor, original);
      const restored = await decompressBytes(compressor, compressed, { maxOutputBytes: original.length });
      expect(Buffer.from(restored).equals(original)).toBe(true);
    }
  });

  it('stops a decompression bomb at the declared size, with bounded output chunks', async () => {
    // 64 MiB of zeros compress to a few kilobytes; the receiver declared 1 MiB.
    const declared = 1024 * 1024;
    const bomb = await collect(compressChunks(compressor, chunked(Buffer.alloc(64 * 1024 * 1024), 4 * 1024 * 1024)));
    expect(bomb.data.length).toBeLessThan(1024 * 1024);
    let producedBytes = 0;
    let largestChunk = 0;
    const consume = (async () => {
      for await (const c of decompressChunks(compressor, chunked(bomb.data, bomb.data.length), { maxOutputBytes: declared })) {
        producedBytes += c.length;
        largestChunk = Math.max(largestChunk, c.length);
      }
    })();
    const err = await rejection(consume);
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toMatch(/more than the declared 1048576 bytes/);
    // Stopped at the declared size: nothing past it was handed on, and no chunk was huge.
    expect(producedBytes).toBeLessThanOrEqual(declared);
    expect(largestChunk).toBeLessThanOrEqual(256 * 1024);
  });

  it('refuses garbage and truncated streams with INVALID_ARGUMENT', async () => {
    const original = sourceLikeBytes(200_000);
    const compressed = Buffer.from(await compressBytes(compressor, original));
    const truncated = compressed.subarray(0, Math.floor(compressed.length / 2));
    expect((await rejection(decompressBytes(compressor, truncated, { maxOutputBytes: original.length }))).code).toBe(Code.INVALID_ARGUMENT);
    const garbage = Buffer.from('this is not a compressed stream at all, just text that goes on and on');
    expect((await rejection(decompressBytes(compressor, garbage, { maxOutputBytes: 1 << 20 }))).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('refuses compressed input beyond maxInputBytes', async () => {
    const compressed = await compressBytes(compressor, sourceLikeBytes(10_000));
    const err = await rejection(decompressBytes(compressor, compressed, { maxOutputBytes: 10_000, maxInputBytes: 10 }));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
  });

  it('passes on an error of the source unchanged', async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield (await compressBytes(compressor, sourceLikeBytes(50_000))).subarray(0, 100);
      throw StatusError.unavailable('client went away');
    }
    const err = await rejection(collect(decompressChunks(compressor, failing(), { maxOutputBytes: 50_000 })));
    expect(err.code).toBe(Code.UNAVAILABLE);
  });
});

describe('interoperability', () => {
  it('decodes raw DEFLATE from zlib and zstd frames from the library one-shot API', async () => {
    const original = sourceLikeBytes(50_000);
    expect(Buffer.from(await decompressBytes('deflate', deflateRawSync(original), { maxOutputBytes: original.length })).equals(original)).toBe(true);
    const dst = Buffer.alloc(zstdBinding.compressBound(original.length));
    const n = zstdBinding.compress(dst, original, 19);
    expect(Buffer.from(await decompressBytes('zstd', dst.subarray(0, n), { maxOutputBytes: original.length })).equals(original)).toBe(true);
  });

  it('decodes several concatenated zstd frames', async () => {
    const a = Buffer.from(await compressBytes('zstd', Buffer.from('hello ')));
    const b = Buffer.from(await compressBytes('zstd', Buffer.from('world')));
    expect(Buffer.from(await decompressBytes('zstd', Buffer.concat([a, b]), { maxOutputBytes: 11 })).toString()).toBe('hello world');
  });
});

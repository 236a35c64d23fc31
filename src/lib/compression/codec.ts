/**
 * Streaming compression and decompression of blob transfers with bounded memory: every function here
 * holds at most a few output buffers (128 KiB each for zstd, zlib's 16 KiB chunks for deflate),
 * whatever the blob size, and yields as it goes so the consumer's backpressure applies.
 *
 * Decompression is where untrusted bytes come in, so it enforces the caller's `maxOutputBytes` (the
 * declared uncompressed size) after each output buffer: a decompression bomb is stopped at the
 * declared size plus one buffer, not after it has filled memory. Malformed and truncated streams are
 * INVALID_ARGUMENT; so is compressed input beyond `maxInputBytes`.
 */
import { pipeline, Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { StatusError } from '../errors/status-error.js';
import type { TransferCompressor } from './compressor.js';
import { zstdBinding } from './zstd-binding.js';

/** zstd level for what we compress: the library default, a good speed/ratio balance for source. */
export const ZSTD_LEVEL = 3;
/**
 * Largest zstd window we decode (2^24 = 16 MiB): bounds the decoder's memory per stream. zstd's
 * encoders stay within it up to level 19 on any input; a frame asking for more is refused.
 */
export const ZSTD_WINDOW_LOG_MAX = 24;
const ZSTD_OUT_BUFFER_BYTES = 128 * 1024;

export interface DecompressLimits {
  /** Output beyond this is refused (a decompression bomb): the blob's declared uncompressed size. */
  maxOutputBytes: number;
  /** Compressed input beyond this is refused. @default unbounded */
  maxInputBytes?: number;
  /** Names the request field in error details. @default 'data' */
  field?: string;
}

/** Compresses a stream of chunks into a stream of compressed chunks. */
export function compressChunks(compressor: TransferCompressor, source: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  return compressor === 'zstd' ? zstdCompress(source) : zlibStream(source, zlib.createDeflateRaw());
}

/** Decompresses a stream of compressed chunks, enforcing `limits`. */
export function decompressChunks(compressor: TransferCompressor, source: AsyncIterable<Uint8Array>, limits: DecompressLimits): AsyncIterable<Uint8Array> {
  const counted = countInput(source, compressor, limits);
  const out = compressor === 'zstd' ? zstdDecompress(counted, limits) : zlibStream(counted, zlib.createInflateRaw(), compressor, limits.field);
  return boundOutput(out, compressor, limits);
}

/** Compresses bytes in memory (batch calls, whose blobs are small). */
export async function compressBytes(compressor: TransferCompressor, data: Uint8Array): Promise<Uint8Array> {
  if (compressor === 'zstd') {
    const dst = Buffer.allocUnsafe(zstdBinding.compressBound(data.length));
    return dst.subarray(0, zstdBinding.compress(dst, data, ZSTD_LEVEL));
  }
  return collect(compressChunks(compressor, once(data)));
}

/** Decompresses bytes in memory, enforcing `limits`. */
export function decompressBytes(compressor: TransferCompressor, data: Uint8Array, limits: DecompressLimits): Promise<Uint8Array> {
  return collect(decompressChunks(compressor, once(data), limits));
}

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of source) parts.push(chunk);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

function bad(compressor: TransferCompressor, field: string | undefined, description: string): StatusError {
  return StatusError.invalidArgument(`Failed to decompress ${compressor} data: ${description}`, [{ field: field ?? 'data', description }]);
}

async function* countInput(source: AsyncIterable<Uint8Array>, compressor: TransferCompressor, limits: DecompressLimits): AsyncGenerator<Uint8Array> {
  let inputBytes = 0;
  for await (const chunk of source) {
    inputBytes += chunk.length;
    if (limits.maxInputBytes !== undefined && inputBytes > limits.maxInputBytes) {
      throw bad(compressor, limits.field, `more than ${limits.maxInputBytes} compressed bytes for a blob of ${limits.maxOutputBytes} bytes`);
    }
    yield chunk;
  }
}

async function* boundOutput(source: AsyncIterable<Uint8Array>, compressor: TransferCompressor, limits: DecompressLimits): AsyncGenerator<Uint8Array> {
  let outputBytes = 0;
  for await (const chunk of source) {
    outputBytes += chunk.length;
    if (outputBytes > limits.maxOutputBytes) {
      throw bad(compressor, limits.field, `decompresses to more than the declared ${limits.maxOutputBytes} bytes`);
    }
    yield chunk;
  }
}

/**
 * zstd decompression through a DCtx: each call of decompressStream fills at most one output buffer,
 * which is yielded (and so counted by boundOutput) before the next is made.
 */
async function* zstdDecompress(source: AsyncIterable<Uint8Array>, limits: DecompressLimits): AsyncGenerator<Uint8Array> {
  const dctx = new zstdBinding.DCtx();
  dctx.setParameter(zstdBinding.DParameter.windowLogMax, ZSTD_WINDOW_LOG_MAX);
  // True between a frame's first byte and its end: a stream that stops there is truncated.
  let inFrame = false;
  for await (const chunk of source) {
    let src = chunk;
    while (src.length > 0 || inFrame) {
      const dst = Buffer.allocUnsafe(ZSTD_OUT_BUFFER_BYTES);
      let result: [number, number, number];
      try {
        result = dctx.decompressStream(dst, src) as [number, number, number];
      } catch (err) {
        throw bad('zstd', limits.field, (err as Error).message);
      }
      const [remaining, produced, consumed] = result;
      src = src.subarray(consumed);
      inFrame = remaining !== 0;
      if (produced > 0) yield dst.subarray(0, produced);
      // The decoder wants more input (and has no more output pending for the input it has).
      if (src.length === 0 && produced < dst.length) break;
    }
  }
  if (inFrame) throw bad('zstd', limits.field, 'the stream ends inside a frame (truncated)');
}

async function* zstdCompress(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const cctx = new zstdBinding.CCtx();
  cctx.setParameter(zstdBinding.CParameter.compressionLevel, ZSTD_LEVEL);
  const outSize = zstdBinding.cStreamOutSize();
  for await (const chunk of source) {
    let src = chunk;
    while (src.length > 0) {
      const dst = Buffer.allocUnsafe(outSize);
      const [, produced, consumed] = cctx.compressStream2(dst, src, zstdBinding.EndDirective.continue) as [number, number, number];
      src = src.subarray(consumed);
      if (produced > 0) yield dst.subarray(0, produced);
    }
  }
  for (;;) {
    const dst = Buffer.allocUnsafe(outSize);
    const [remaining, produced] = cctx.compressStream2(dst, new Uint8Array(0), zstdBinding.EndDirective.end) as [number, number, number];
    if (produced > 0) yield dst.subarray(0, produced);
    if (remaining === 0) return;
  }
}

/**
 * A node:zlib transform driven by an async source. zlib works in 16 KiB output chunks and pauses
 * when its readable side is full, so memory stays bounded; errors of the source or the codec end
 * the iteration (codec errors become INVALID_ARGUMENT when decompressing).
 */
async function* zlibStream(source: AsyncIterable<Uint8Array>, transform: zlib.Inflate | zlib.Deflate | zlib.InflateRaw | zlib.DeflateRaw, decompressing?: TransferCompressor, field?: string): AsyncGenerator<Uint8Array> {
  let sourceError: unknown;
  const input = Readable.from(
    (async function* () {
      try {
        yield* source;
      } catch (err) {
        sourceError = err;
        throw err;
      }
    })(),
    { objectMode: false },
  );
  const out = pipeline(input, transform, () => {});
  try {
    for await (const chunk of out as AsyncIterable<Buffer>) yield chunk;
  } catch (err) {
    if (sourceError !== undefined) throw sourceError;
    if (decompressing) throw bad(decompressing, field, (err as Error).message);
    throw err;
  } finally {
    input.destroy();
    transform.destroy();
  }
}

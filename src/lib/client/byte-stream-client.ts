/**
 * ByteStream for the CAS client: large blobs are written in chunks (read from memory, a file or a
 * stream) and read as streams. Both resume after a dropped connection instead of starting over: a
 * write continues from the server's committed size (QueryWriteStatus), a read from the last byte
 * received. Retries follow the one policy of retry.ts.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { compressChunks, decompressChunks } from '../compression/codec.js';
import type { TransferCompressor } from '../compression/compressor.js';
import type { Digest } from '../digest/digest.js';
import { Code, hasCode, isAbortError, StatusError, toStatusError, wrapStatus } from '../errors/status-error.js';
import type { bytestream } from '../proto/index.js';
import { byteStreamService } from '../proto/services.js';
import { abortable } from '../util/abort.js';
import type { RemoteCallOptions, RemoteConnection } from './connection.js';
import { pauseBeforeRetry, type ResolvedRetryOptions, withRetry } from './retry.js';

/** A source of bytes that can be reopened at an offset, which is what makes a write resumable. */
export type WriteSource = Uint8Array | { path: string } | AsyncIterable<Uint8Array>;

/** How a transfer travels: `compressor` set means `compressed-blobs/` resource names (REAPI 2.2+). */
export interface TransferOptions {
  compressor?: TransferCompressor;
}

export class ByteStreamClient {
  constructor(
    private readonly connection: RemoteConnection,
    private readonly retry: ResolvedRetryOptions,
    /** Payload bytes per ByteStream message. */
    private readonly chunkSizeBytes: number,
  ) {}

  /**
   * Writes one blob with ByteStream Write in chunks. A byte array or file is resumable: after an
   * UNAVAILABLE the upload continues from the server's committed size (QueryWriteStatus); a one-shot
   * stream is not, and fails instead.
   */
  async write(digest: Digest, source: WriteSource, opts: RemoteCallOptions & TransferOptions = {}): Promise<void> {
    if (opts.compressor) return this.writeCompressed(digest, source, opts.compressor, opts);
    const resourceName = digest.toByteStreamWritePath(randomUUID());
    const resumable = source instanceof Uint8Array || (typeof source === 'object' && 'path' in source);
    let offset = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.writeAttempt(resourceName, digest, offset, this.openSource(source, offset), opts);
        return;
      } catch (err) {
        const e = toStatusError(err);
        if (!resumable || !(await pauseBeforeRetry(this.retry, attempt, e, opts.signal))) {
          throw wrapStatus(e, `Failed to write blob ${digest} with ByteStream`);
        }
        const status = await this.queryWriteStatus(resourceName, opts);
        if (status.complete) return;
        offset = status.committedSize;
      }
    }
  }

  /**
   * Writes one blob compressed on the fly. Offsets of a compressed upload count compressed bytes,
   * which cannot be reproduced from an uncompressed offset, so a retry starts the upload over (from
   * offset 0 of the same name, which the server treats as a restart) unless the blob got stored.
   */
  private async writeCompressed(digest: Digest, source: WriteSource, compressor: TransferCompressor, opts: RemoteCallOptions): Promise<void> {
    const resourceName = digest.toByteStreamWritePath(randomUUID(), compressor);
    const resumable = source instanceof Uint8Array || (typeof source === 'object' && 'path' in source);
    for (let attempt = 1; ; attempt++) {
      try {
        const plain = checkedLength(digest, this.openSource(source, 0));
        await this.writeAttempt(resourceName, digest, 0, rechunk(compressChunks(compressor, plain), this.chunkSizeBytes), opts, true);
        return;
      } catch (err) {
        const e = toStatusError(err);
        if (!resumable || !(await pauseBeforeRetry(this.retry, attempt, e, opts.signal))) {
          throw wrapStatus(e, `Failed to write blob ${digest} with ByteStream (${compressor})`);
        }
        if ((await this.queryWriteStatus(resourceName, opts)).complete) return;
      }
    }
  }

  /** How much of an upload the server holds. An unknown upload counts as nothing committed. */
  async queryWriteStatus(resourceName: string, opts: RemoteCallOptions = {}): Promise<{ committedSize: number; complete: boolean }> {
    try {
      const res = await withRetry(this.retry, () => this.connection.unary(byteStreamService.queryWriteStatus, { resourceName }, opts), opts.signal);
      return { committedSize: res.committedSize ?? 0, complete: res.complete ?? false };
    } catch (err) {
      if (hasCode(err, Code.NOT_FOUND) || hasCode(err, Code.UNIMPLEMENTED)) return { committedSize: 0, complete: false };
      throw wrapStatus(err, `Failed to query the status of upload ${JSON.stringify(resourceName)}`);
    }
  }

  /**
   * Streams a blob (or the range `offset`..`offset+limit`) with ByteStream Read, resuming after
   * UNAVAILABLE from the last byte received. NOT_FOUND surfaces from the iterator.
   */
  async *read(digest: Digest, opts: RemoteCallOptions & TransferOptions & { offset?: number; limit?: number } = {}): AsyncGenerator<Uint8Array> {
    const start = opts.offset ?? 0;
    if (start < 0 || start > digest.sizeBytes) throw StatusError.outOfRange(`Failed to read blob ${digest}: offset ${start} is outside the blob`);
    const end = opts.limit ? Math.min(digest.sizeBytes, start + opts.limit) : digest.sizeBytes;
    let position = start;
    // A zero-size digest with another hash is not the empty blob: let the server answer for it.
    if (position >= end && (digest.sizeBytes > 0 || digest.isEmpty)) return;
    // Compressed reads may not carry a read_limit (REAPI), so a range short of the end reads plain.
    const compressor = end === digest.sizeBytes ? opts.compressor : undefined;
    const resourceName = digest.toByteStreamReadPath(compressor ?? 'identity');
    for (let attempt = 1; ; attempt++) {
      try {
        // read_offset is into the uncompressed bytes either way, so a retry resumes at `position`.
        const request = { resourceName, readOffset: position, readLimit: compressor ? 0 : end - position };
        const messages = this.connection.serverStream(byteStreamService.read, request, { signal: opts.signal, deadlineMs: opts.deadlineMs });
        const payloads = (async function* () {
          for await (const res of messages) if (res.data?.length) yield res.data;
        })();
        const chunks = compressor ? decompressChunks(compressor, payloads, { maxOutputBytes: end - position }) : payloads;
        for await (const data of chunks) {
          if (data.length === 0) continue;
          if (position + data.length > end) throw StatusError.internal(`Failed to read blob ${digest}: the server sent more than ${end - start} bytes`);
          position += data.length;
          yield data;
        }
        if (position !== end) throw new StatusError(Code.DATA_LOSS, `Failed to read blob ${digest}: the stream ended after ${position} of ${end} bytes`);
        return;
      } catch (err) {
        const e = toStatusError(err);
        if (!(await pauseBeforeRetry(this.retry, attempt, e, opts.signal))) {
          throw e.message.startsWith('Failed to read blob') ? e : wrapStatus(e, `Failed to read blob ${digest}`);
        }
      }
    }
  }

  private async writeAttempt(
    resourceName: string,
    digest: Digest,
    startOffset: number,
    chunks: AsyncIterable<Uint8Array>,
    opts: RemoteCallOptions,
    compressed = false,
  ): Promise<void> {
    const call = this.connection.clientStream(byteStreamService.write, { signal: opts.signal });
    let position = startOffset;
    let finished = false;
    let first = true;
    const send = async (data: Uint8Array, finishWrite: boolean) => {
      const message: bytestream.IWriteRequest = { writeOffset: position, data, finishWrite };
      if (first) message.resourceName = resourceName;
      first = false;
      await call.write(message);
      position += data.length;
      finished = finishWrite;
    };
    try {
      for await (const data of untilAborted(chunks, opts.signal)) {
        // The server may answer early, e.g. because it already holds the blob.
        if (call.settled) break;
        if (compressed) {
          // The compressed length is known only at the end: finish_write goes in an empty last message.
          await send(data, false);
          continue;
        }
        if (position + data.length > digest.sizeBytes) {
          throw StatusError.failedPrecondition(`The source of blob ${digest} holds more than ${digest.sizeBytes} bytes; was it modified after hashing?`);
        }
        await send(data, position + data.length === digest.sizeBytes);
      }
      if (!compressed && !call.settled && position !== digest.sizeBytes) {
        throw StatusError.failedPrecondition(`The source of blob ${digest} ended after ${position} of ${digest.sizeBytes} bytes; was it modified after hashing?`);
      }
      if (!call.settled && !finished) await send(new Uint8Array(0), true);
      call.end();
    } catch (err) {
      if (!call.settled) {
        call.cancel();
        throw err;
      }
    }
    const res = await call.response;
    const committed = Number(res.committedSize ?? 0);
    // A compressed upload commits the compressed bytes sent, or -1 when the blob was already stored.
    if (compressed ? committed !== -1 && committed !== position : committed !== digest.sizeBytes) {
      throw StatusError.internal(`The server committed ${committed} of ${digest.sizeBytes} bytes of blob ${digest}`);
    }
  }

  private async *openSource(source: WriteSource, offset: number): AsyncGenerator<Uint8Array> {
    const size = this.chunkSizeBytes;
    if (source instanceof Uint8Array) {
      for (let i = offset; i < source.length; i += size) yield source.subarray(i, Math.min(i + size, source.length));
    } else if ('path' in source) {
      yield* createReadStream(source.path, { start: offset, highWaterMark: size }) as AsyncIterable<Buffer>;
    } else {
      if (offset !== 0) throw StatusError.internal('A one-shot stream cannot be resumed');
      for await (const data of source) {
        for (let i = 0; i < data.length; i += size) yield data.subarray(i, Math.min(i + size, data.length));
      }
    }
  }
}

/** Passes `source` on, failing if it holds other than the digest's size (checked before compression). */
async function* checkedLength(digest: Digest, source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let sizeBytes = 0;
  for await (const data of source) {
    sizeBytes += data.length;
    if (sizeBytes > digest.sizeBytes) {
      throw StatusError.failedPrecondition(`The source of blob ${digest} holds more than ${digest.sizeBytes} bytes; was it modified after hashing?`);
    }
    yield data;
  }
  if (sizeBytes !== digest.sizeBytes) {
    throw StatusError.failedPrecondition(`The source of blob ${digest} ended after ${sizeBytes} of ${digest.sizeBytes} bytes; was it modified after hashing?`);
  }
}

/** Regroups small compressor outputs into messages of up to `chunkSizeBytes`. */
async function* rechunk(source: AsyncIterable<Uint8Array>, chunkSizeBytes: number): AsyncGenerator<Uint8Array> {
  let parts: Uint8Array[] = [];
  let pending = 0;
  for await (const data of source) {
    parts.push(data);
    pending += data.length;
    if (pending >= chunkSizeBytes) {
      const joined = Buffer.concat(parts);
      for (let i = 0; i + chunkSizeBytes <= joined.length; i += chunkSizeBytes) yield joined.subarray(i, i + chunkSizeBytes);
      const rest = joined.subarray(joined.length - (joined.length % chunkSizeBytes));
      parts = rest.length ? [rest] : [];
      pending = rest.length;
    }
  }
  if (pending > 0) yield Buffer.concat(parts);
}

/** Iterates `source` but rejects with CANCELLED as soon as `signal` fires, even while the source is stalled. */
async function* untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal | undefined): AsyncGenerator<T> {
  // `abortable` listens per step: racing each step against one long-lived promise would keep every
  // chunk of the upload reachable until it ended, so memory would grow with the blob's size.
  try {
    yield* abortable(source, signal);
  } catch (err) {
    if (isAbortError(err)) throw StatusError.cancelled('The upload was cancelled');
    throw err;
  }
}

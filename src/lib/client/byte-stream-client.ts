/**
 * ByteStream for the CAS client: large blobs are written in chunks (read from memory, a file or a
 * stream) and read as streams. Both resume after a dropped connection instead of starting over: a
 * write continues from the server's committed size (QueryWriteStatus), a read from the last byte
 * received. Retries follow the one policy of retry.ts.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Digest } from '../digest/digest.js';
import { Code, hasCode, isAbortError, StatusError, toStatusError, wrapStatus } from '../errors/status-error.js';
import type { bytestream } from '../proto/index.js';
import { byteStreamService } from '../proto/services.js';
import { abortable } from '../util/abort.js';
import type { RemoteCallOptions, RemoteConnection } from './connection.js';
import { pauseBeforeRetry, type ResolvedRetryOptions, withRetry } from './retry.js';

/** A source of bytes that can be reopened at an offset, which is what makes a write resumable. */
export type WriteSource = Uint8Array | { path: string } | AsyncIterable<Uint8Array>;

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
  async write(digest: Digest, source: WriteSource, opts: RemoteCallOptions = {}): Promise<void> {
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
  async *read(digest: Digest, opts: RemoteCallOptions & { offset?: number; limit?: number } = {}): AsyncGenerator<Uint8Array> {
    const start = opts.offset ?? 0;
    if (start < 0 || start > digest.sizeBytes) throw StatusError.outOfRange(`Failed to read blob ${digest}: offset ${start} is outside the blob`);
    const end = opts.limit ? Math.min(digest.sizeBytes, start + opts.limit) : digest.sizeBytes;
    let position = start;
    // A zero-size digest with another hash is not the empty blob: let the server answer for it.
    if (position >= end && (digest.sizeBytes > 0 || digest.isEmpty)) return;
    const resourceName = digest.toByteStreamReadPath();
    for (let attempt = 1; ; attempt++) {
      try {
        const request = { resourceName, readOffset: position, readLimit: end - position };
        for await (const res of this.connection.serverStream(byteStreamService.read, request, { signal: opts.signal, deadlineMs: opts.deadlineMs })) {
          const data = res.data ?? new Uint8Array(0);
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
        if (position + data.length > digest.sizeBytes) {
          throw StatusError.failedPrecondition(`The source of blob ${digest} holds more than ${digest.sizeBytes} bytes; was it modified after hashing?`);
        }
        await send(data, position + data.length === digest.sizeBytes);
      }
      if (!call.settled && position !== digest.sizeBytes) {
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
    const committed = res.committedSize ?? 0;
    if (committed !== digest.sizeBytes) {
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

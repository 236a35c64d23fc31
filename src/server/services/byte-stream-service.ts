/**
 * google.bytestream.ByteStream over the CAS: how Bazel moves blobs too large for a batch.
 *
 * Read streams a blob (or a range of it) in chunks of at most 1 MiB, honouring gRPC backpressure, so
 * memory never grows with blob size. Write pipes the client's chunks straight into one streaming
 * `put()`, which (through a VerifyingBlobStore) checks the hash before the blob becomes visible.
 *
 * Writes are resumable, as the ByteStream spec describes: when a Write stream ends or breaks before
 * `finish_write`, its `put()` is not cancelled but parked, still waiting for its next chunk, under the
 * upload's resource name. QueryWriteStatus then reports the bytes received so far, and a new Write
 * with that `write_offset` continues the same `put()`. Parked uploads that nobody resumes within
 * `uploadIdleTimeoutMs` are aborted, which leaves nothing visible.
 */
import type * as grpc from '@grpc/grpc-js';
import type { BlobStore } from '../../lib/blobstore/blob-store.js';
import {
  type Compressor,
  type Digest,
  type ParsedReadResourceName,
  parseReadResourceName,
  parseWriteResourceName,
} from '../../lib/digest/digest.js';
import { StatusError, toStatusError, wrapStatus } from '../../lib/errors/status-error.js';
import type { bytestream } from '../../lib/proto/index.js';
import { type Clock, systemClock } from '../../lib/util/clock.js';
import type { Logger } from '../../lib/util/logger.js';
import type { CallContext, HandlerFactory } from '../grpc/handlers.js';
import { type ResolvedCapabilitiesConfig, assertDigestFunctionServed } from './capabilities-service.js';

/** Largest `data` in one ReadResponse: well under Bazel's 4 MiB message limit. */
export const READ_CHUNK_SIZE_BYTES = 1024 * 1024;
/** How long an interrupted upload waits to be resumed before it is aborted. */
export const DEFAULT_UPLOAD_IDLE_TIMEOUT_MS = 60_000;
/** Most uploads kept at once (running and parked); the oldest parked one is aborted to make room. */
export const DEFAULT_MAX_PENDING_UPLOADS = 1000;

export interface ByteStreamServiceDeps {
  /** Must verify digests on put (a VerifyingBlobStore), so that a wrong upload never becomes visible. */
  contentAddressableStorage: BlobStore;
  capabilities: ResolvedCapabilitiesConfig;
  logger: Logger;
  /** @default systemClock */
  clock?: Clock;
  /** @default DEFAULT_UPLOAD_IDLE_TIMEOUT_MS */
  uploadIdleTimeoutMs?: number;
  /** @default DEFAULT_MAX_PENDING_UPLOADS */
  maxPendingUploads?: number;
}

/** The service implementation plus the handle that aborts parked uploads when the server stops. */
export interface ByteStreamService {
  implementation: grpc.UntypedServiceImplementation;
  /** Number of uploads currently running or parked (for tests and metrics). */
  readonly pendingUploadCount: number;
  /** Aborts every running and parked upload. */
  close(): void;
}

/** Creates the ByteStream service. Call `close()` when the server shuts down. */
export function createByteStreamService(handlers: HandlerFactory, deps: ByteStreamServiceDeps): ByteStreamService {
  const cas = deps.contentAddressableStorage;
  const served = deps.capabilities.digestFunctions;
  const uploads = new UploadRegistry(
    cas,
    deps.clock ?? systemClock,
    deps.uploadIdleTimeoutMs ?? DEFAULT_UPLOAD_IDLE_TIMEOUT_MS,
    deps.maxPendingUploads ?? DEFAULT_MAX_PENDING_UPLOADS,
    deps.logger,
  );

  const implementation: grpc.UntypedServiceImplementation = {
    read: handlers.serverStream<bytestream.ReadRequest, bytestream.IReadResponse>('ByteStream.Read', (request, ctx) => read(request, ctx)),
    write: handlers.clientStream<bytestream.WriteRequest, bytestream.IWriteResponse>('ByteStream.Write', (requests, ctx) => write(requests, ctx)),
    queryWriteStatus: handlers.unary<bytestream.QueryWriteStatusRequest, bytestream.IQueryWriteStatusResponse>(
      'ByteStream.QueryWriteStatus',
      (request, ctx) => queryWriteStatus(request, ctx),
    ),
  };

  return {
    implementation,
    get pendingUploadCount() {
      return uploads.size;
    },
    close: () => uploads.close(),
  };

  async function* read(request: bytestream.ReadRequest, ctx: CallContext): AsyncGenerator<bytestream.IReadResponse> {
    const { digest } = checkResourceName(parseReadResourceName(request.resourceName), 'resource_name');
    const offset = request.readOffset;
    const limit = request.readLimit;
    // google.bytestream: a read_offset that is negative or past the end is OUT_OF_RANGE.
    if (offset < 0) throw StatusError.outOfRange(`Failed to read blob ${digest.toString()}: read_offset ${offset} is negative`);
    if (limit < 0) throw badField('read_limit', `Read limit ${limit} is negative`);
    if (offset > digest.sizeBytes) {
      throw StatusError.outOfRange(`Failed to read blob ${digest.toString()}: read_offset ${offset} is past its end (${digest.sizeBytes} bytes)`);
    }
    try {
      for await (const chunk of cas.read(digest, { offset, limit: limit || undefined, signal: ctx.signal })) {
        // Stores may hand out large chunks; split them (without copying) to bound each message.
        for (let i = 0; i < chunk.length; i += READ_CHUNK_SIZE_BYTES) {
          yield { data: chunk.subarray(i, i + READ_CHUNK_SIZE_BYTES) };
        }
      }
    } catch (err) {
      throw wrapStatus(err, `Failed to read blob ${digest.toString()}`);
    }
  }

  async function write(requests: AsyncIterable<bytestream.WriteRequest>, ctx: CallContext): Promise<bytestream.IWriteResponse> {
    const it = requests[Symbol.asyncIterator]();
    // Stops reading the client's messages once we have answered (early completion or an error).
    const stopReading = () => void it.return?.(undefined)?.catch(() => {});
    try {
      const first = await it.next();
      if (first.done) throw badField('resource_name', 'Write stream ended before its first message');
      const resourceName = first.value.resourceName;
      const parsed = checkResourceName(parseWriteResourceName(resourceName), 'resource_name');
      const digest = parsed.digest;
      const key = uploadKey(parsed.uploadId, digest);

      // Early completion: a blob already present needs none of the client's bytes.
      const missing = await cas.findMissing([digest], { signal: ctx.signal });
      if (missing.length === 0) {
        uploads.discard(key, StatusError.aborted(`Upload ${JSON.stringify(resourceName)} was superseded: the blob is already stored`));
        return { committedSize: digest.sizeBytes };
      }

      // A whole blob in one message (most of Bazel's uploads: every blob of up to 16 KiB) needs no
      // resumable upload: it is verified and stored in one call, without the streaming machinery.
      const firstData = first.value.data;
      if (first.value.finishWrite && first.value.writeOffset === 0 && firstData?.length === digest.sizeBytes && uploads.get(key) === undefined) {
        try {
          await cas.put(digest, firstData, { signal: ctx.signal });
        } catch (err) {
          throw wrapStatus(err, `Failed to store blob ${digest.toString()}`);
        }
        return { committedSize: digest.sizeBytes };
      }

      const upload = uploads.attach(key, digest, first.value.writeOffset, resourceName);
      try {
        let message = first.value;
        for (;;) {
          const done = await feed(upload, message, resourceName);
          if (done) return { committedSize: digest.sizeBytes };
          const next = await it.next();
          // The client half-closed without finish_write: keep what we have for a later Write to resume.
          if (next.done) return { committedSize: upload.committedSizeBytes };
          message = next.value;
        }
      } finally {
        uploads.detach(upload);
      }
    } finally {
      stopReading();
    }
  }

  /** Hands one WriteRequest to the upload; true once the blob is stored. */
  async function feed(upload: PendingUpload, message: bytestream.WriteRequest, resourceName: string): Promise<boolean> {
    const digest = upload.digest;
    if (message.resourceName !== '' && message.resourceName !== resourceName) {
      throw badField('resource_name', `Resource name changed within one Write stream from ${JSON.stringify(resourceName)} to ${JSON.stringify(message.resourceName)}`);
    }
    if (message.writeOffset !== upload.committedSizeBytes) {
      throw badField('write_offset', `Write offset ${message.writeOffset} does not match the ${upload.committedSizeBytes} bytes received so far for ${digest.toString()}`);
    }
    const data = message.data ?? new Uint8Array(0);
    if (upload.committedSizeBytes + data.length > digest.sizeBytes) {
      const err = badField(
        'data',
        `Received ${upload.committedSizeBytes + data.length} bytes for blob ${digest.toString()}, more than its declared ${digest.sizeBytes}`,
      );
      uploads.discard(upload.key, err);
      throw err;
    }
    if (data.length > 0) await upload.push(data);
    if (!message.finishWrite) return false;
    if (upload.committedSizeBytes !== digest.sizeBytes) {
      const err = badField('finish_write', `Write finished after ${upload.committedSizeBytes} of the ${digest.sizeBytes} bytes of blob ${digest.toString()}`);
      uploads.discard(upload.key, err);
      throw err;
    }
    await uploads.finish(upload);
    return true;
  }

  async function queryWriteStatus(request: bytestream.QueryWriteStatusRequest, ctx: CallContext): Promise<bytestream.IQueryWriteStatusResponse> {
    let digest: Digest;
    let key: string | undefined;
    try {
      const parsed = checkResourceName(parseWriteResourceName(request.resourceName), 'resource_name');
      digest = parsed.digest;
      key = uploadKey(parsed.uploadId, digest);
    } catch (writeErr) {
      // Also accept a plain blob name: it can only answer whether the blob is complete.
      try {
        digest = checkResourceName(parseReadResourceName(request.resourceName), 'resource_name').digest;
      } catch {
        throw writeErr;
      }
    }
    const missing = await cas.findMissing([digest], { signal: ctx.signal });
    if (missing.length === 0) return { committedSize: digest.sizeBytes, complete: true };
    const upload = key === undefined ? undefined : uploads.get(key);
    if (upload) return { committedSize: upload.committedSizeBytes, complete: false };
    throw StatusError.notFound(
      `Failed to query write status: no upload of ${JSON.stringify(request.resourceName)} is in progress (it may have expired) and the blob is not stored`,
    );
  }

  /** Refuses compressed resource names and digest functions we do not serve. */
  function checkResourceName<T extends ParsedReadResourceName>(parsed: T, field: string): T {
    if (parsed.compressor !== 'identity') {
      throw badField(field, `Compressor ${JSON.stringify(parsed.compressor satisfies Compressor)} is not supported by this server; use a "blobs/" resource name (supported_compressors is empty)`);
    }
    assertDigestFunctionServed(served, parsed.digest, field);
    return parsed;
  }
}

function uploadKey(uploadId: string, digest: Digest): string {
  // Digest.key includes the instance name, so equal upload ids of two instances stay apart.
  return `${uploadId}\u0000${digest.key}`;
}

function badField(field: string, description: string): StatusError {
  return StatusError.invalidArgument(`Failed to process ByteStream request: ${description}`, [{ field, description }]);
}

/**
 * The uploads that are running or parked, keyed by upload id and digest. Owns their lifecycle:
 * creation, resumption, the idle timeout of parked ones and aborting them.
 */
class UploadRegistry {
  private readonly uploads = new Map<string, PendingUpload>();

  constructor(
    private readonly cas: BlobStore,
    private readonly clock: Clock,
    private readonly idleTimeoutMs: number,
    private readonly maxPendingUploads: number,
    private readonly logger: Logger,
  ) {}

  get size(): number {
    return this.uploads.size;
  }

  /** A live (not failed) upload, or undefined. */
  get(key: string): PendingUpload | undefined {
    const upload = this.uploads.get(key);
    if (upload?.failure) {
      this.remove(upload);
      return undefined;
    }
    return upload;
  }

  /**
   * Claims the upload a Write stream continues (write_offset > 0) or starts (write_offset 0, which
   * also restarts an existing upload of the same name from scratch).
   */
  attach(key: string, digest: Digest, writeOffset: number, resourceName: string): PendingUpload {
    const existing = this.uploads.get(key);
    if (existing?.attached) {
      throw StatusError.aborted(`Failed to write ${JSON.stringify(resourceName)}: another Write call is writing this upload; retry after it ends`);
    }
    if (writeOffset === 0) {
      if (existing) this.discard(key, StatusError.aborted(`Upload ${JSON.stringify(resourceName)} was restarted from offset 0`));
      this.makeRoom(resourceName);
      const upload = new PendingUpload(key, digest, this.cas);
      this.uploads.set(key, upload);
      upload.attached = true;
      return upload;
    }
    if (existing?.failure) {
      this.remove(existing);
      throw wrapStatus(existing.failure, `Failed to resume upload ${JSON.stringify(resourceName)}; restart it at offset 0`);
    }
    if (!existing) {
      throw badField('write_offset', `Write offset ${writeOffset} continues no upload of ${JSON.stringify(resourceName)} (unknown or expired); restart at offset 0`);
    }
    if (existing.committedSizeBytes !== writeOffset) {
      throw badField('write_offset', `Write offset ${writeOffset} does not match the ${existing.committedSizeBytes} bytes received so far; ask QueryWriteStatus where to resume`);
    }
    existing.cancelIdleTimer();
    existing.attached = true;
    return existing;
  }

  /** Called when a Write stream stops feeding an upload: park it for resumption unless it ended. */
  detach(upload: PendingUpload): void {
    upload.attached = false;
    if (this.uploads.get(upload.key) !== upload) return;
    if (upload.failure) {
      this.remove(upload);
      return;
    }
    const timer = new AbortController();
    upload.idleTimer = timer;
    this.clock.sleep(this.idleTimeoutMs, timer.signal).then(
      () => {
        if (upload.idleTimer !== timer) return;
        this.logger.debug('Aborting an upload nobody resumed', { digest: upload.digest.toString(), committedSizeBytes: upload.committedSizeBytes });
        this.discard(upload.key, StatusError.aborted(`Upload of ${upload.digest.toString()} expired after ${this.idleTimeoutMs} ms without being resumed`));
      },
      () => {},
    );
  }

  /** Ends the upload's data and waits for the store to verify and commit it. */
  async finish(upload: PendingUpload): Promise<void> {
    try {
      await upload.finish();
    } finally {
      this.remove(upload);
    }
  }

  /** Aborts an upload (if any) so that nothing of it becomes visible. */
  discard(key: string, reason: StatusError): void {
    const upload = this.uploads.get(key);
    if (!upload) return;
    this.remove(upload);
    upload.abort(reason);
  }

  close(): void {
    for (const key of [...this.uploads.keys()]) this.discard(key, StatusError.unavailable('The server is shutting down'));
  }

  private remove(upload: PendingUpload): void {
    upload.cancelIdleTimer();
    if (this.uploads.get(upload.key) === upload) this.uploads.delete(upload.key);
  }

  private makeRoom(resourceName: string): void {
    if (this.uploads.size < this.maxPendingUploads) return;
    for (const upload of this.uploads.values()) {
      if (!upload.attached) {
        this.discard(upload.key, StatusError.aborted(`Upload of ${upload.digest.toString()} was evicted to make room for newer uploads`));
        return;
      }
    }
    throw StatusError.resourceExhausted(`Failed to start upload ${JSON.stringify(resourceName)}: ${this.uploads.size} uploads are already running`);
  }
}

/** One streaming `put()` and the pushable source feeding it. */
class PendingUpload {
  readonly source = new ChunkChannel();
  private readonly controller = new AbortController();
  private readonly done: Promise<void>;
  committedSizeBytes = 0;
  attached = false;
  failure?: StatusError;
  idleTimer?: AbortController;

  constructor(
    readonly key: string,
    readonly digest: Digest,
    cas: BlobStore,
  ) {
    this.done = cas.put(digest, this.source, { signal: this.controller.signal });
    // Remember why the store gave up, and make sure the rejection is never unhandled.
    this.done.catch((err: unknown) => {
      this.failure ??= toStatusError(err);
      this.source.abort(this.failure);
    });
  }

  /** Queues a chunk (counted as received at once) and waits until the store has taken it. */
  async push(data: Uint8Array): Promise<void> {
    this.committedSizeBytes += data.length;
    try {
      await this.source.push(data);
    } catch (err) {
      // The store stopped reading; its own error says why.
      await this.done.catch(() => {});
      throw wrapStatus(this.failure ?? err, `Failed to store blob ${this.digest.toString()}`);
    }
  }

  async finish(): Promise<void> {
    this.source.end();
    try {
      await this.done;
    } catch (err) {
      throw wrapStatus(err, `Failed to store blob ${this.digest.toString()}`);
    }
  }

  abort(reason: StatusError): void {
    this.failure ??= reason;
    this.source.abort(reason);
    this.controller.abort(reason);
  }

  cancelIdleTimer(): void {
    this.idleTimer?.abort();
    this.idleTimer = undefined;
  }
}

/**
 * An async iterable fed by `push()`: the bridge between Write streams (which come and go) and the
 * one `put()` that consumes the upload. `push()` resolves once the consumer has taken the chunk,
 * which carries the store's backpressure to the gRPC stream.
 */
export class ChunkChannel implements AsyncIterable<Uint8Array> {
  private readonly queue: { chunk: Uint8Array; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private waiter?: { resolve: (r: IteratorResult<Uint8Array>) => void; reject: (err: unknown) => void };
  private ended = false;
  private error: unknown;
  private failed = false;

  push(chunk: Uint8Array): Promise<void> {
    if (this.failed) return Promise.reject(this.error);
    if (this.ended) return Promise.reject(StatusError.internal('Chunk pushed after the end of the upload'));
    return new Promise((resolve, reject) => {
      const waiter = this.waiter;
      if (waiter) {
        this.waiter = undefined;
        waiter.resolve({ value: chunk, done: false });
        resolve();
      } else {
        this.queue.push({ chunk, resolve, reject });
      }
    });
  }

  end(): void {
    this.ended = true;
    if (this.waiter && this.queue.length === 0) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.resolve({ value: undefined, done: true });
    }
  }

  /** Fails the consumer's next read and every queued or future push. */
  abort(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.error = err;
    for (const item of this.queue.splice(0)) item.reject(err);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(err);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        if (this.failed) return Promise.reject(this.error);
        const item = this.queue.shift();
        if (item) {
          item.resolve();
          return Promise.resolve({ value: item.chunk, done: false });
        }
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiter = { resolve, reject };
        });
      },
      return: () => {
        // The consumer stopped early (the store failed): producers must not wait forever.
        this.abort(StatusError.aborted('The store stopped reading the upload'));
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}


/**
 * The ByteStream Write state machine over a BlobStore: resumable uploads as the ByteStream spec
 * describes them. The gRPC service (src/server/services/byte-stream-service.ts) only parses resource
 * names and hands the message stream here.
 *
 * A Write pipes the client's chunks straight into one streaming `put()`, which (through a
 * VerifyingBlobStore) checks the hash before the blob becomes visible. When a Write stream ends or
 * breaks before `finish_write`, its `put()` is not cancelled but parked, still waiting for its next
 * chunk, under the upload's resource name. QueryWriteStatus then reports the bytes received so far,
 * and a new Write with that `write_offset` continues the same `put()`. Parked uploads that nobody
 * resumes within `idleTimeoutMs` are aborted, which leaves nothing visible.
 *
 * Memory: a parked upload's bytes are in its store's temporary file, except what the store buffers
 * (a disk store batches up to two MiB per upload). Parked uploads may keep buffers up to
 * `maxParkedMemoryBytes` in total; past it a parking upload is *spilled*: an empty chunk tells its
 * store to write out and drop its buffers (blob-store.ts), so 500 parked uploads cost files, not
 * a gigabyte of heap (issue 11). Nothing received is lost and the digest is verified as before,
 * when the upload finishes. `maxPendingUploads` bounds their number (and open files).
 */
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import { decompressChunks } from '../compression/codec.js';
import { maxCompressedSizeBytes, type TransferCompressor } from '../compression/compressor.js';
import type { Digest } from '../digest/digest.js';
import { StatusError, toStatusError, wrapStatus } from '../errors/status-error.js';
import type { bytestream } from '../proto/index.js';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { ChunkChannel } from './chunk-channel.js';

/** How long an interrupted upload waits to be resumed before it is aborted. */
export const DEFAULT_UPLOAD_IDLE_TIMEOUT_MS = 60_000;
/** Most uploads kept at once (running and parked); the oldest parked one is aborted to make room. */
export const DEFAULT_MAX_PENDING_UPLOADS = 1000;
/** Bytes parked uploads may keep buffered in memory in total before parking ones are spilled to disk. */
export const DEFAULT_MAX_PARKED_MEMORY_BYTES = 64 * 1024 * 1024;

/** The parsed resource name of a Write: the blob, the client's upload id and how the bytes are compressed. */
export interface WriteTarget {
  resourceName: string;
  digest: Digest;
  uploadId: string;
  /**
   * Set for `compressed-blobs/` names: the data is decompressed on the way into the store, and
   * write offsets and committed sizes count compressed bytes (REAPI). @default 'identity'
   */
  compressor?: TransferCompressor | 'identity';
}

export interface ResumableUploadsOptions {
  /** Must verify digests on put (a VerifyingBlobStore), so that a wrong upload never becomes visible. */
  contentAddressableStorage: BlobStore;
  clock: Clock;
  logger: Logger;
  /** @default DEFAULT_UPLOAD_IDLE_TIMEOUT_MS */
  idleTimeoutMs?: number;
  /** @default DEFAULT_MAX_PENDING_UPLOADS */
  maxPendingUploads?: number;
  /** @default DEFAULT_MAX_PARKED_MEMORY_BYTES */
  maxParkedMemoryBytes?: number;
}

/** An INVALID_ARGUMENT naming the ByteStream request field at fault. */
export function badByteStreamField(field: string, description: string): StatusError {
  return StatusError.invalidArgument(`Failed to process ByteStream request: ${description}`, [{ field, description }]);
}
const badField = badByteStreamField;

export class ResumableUploads {
  private readonly cas: BlobStore;
  private readonly uploads: UploadRegistry;

  constructor(opts: ResumableUploadsOptions) {
    this.cas = opts.contentAddressableStorage;
    this.uploads = new UploadRegistry(
      opts.contentAddressableStorage,
      opts.clock,
      opts.idleTimeoutMs ?? DEFAULT_UPLOAD_IDLE_TIMEOUT_MS,
      opts.maxPendingUploads ?? DEFAULT_MAX_PENDING_UPLOADS,
      opts.maxParkedMemoryBytes ?? DEFAULT_MAX_PARKED_MEMORY_BYTES,
      opts.logger,
    );
  }

  /** Bytes parked uploads are believed to keep buffered (at most `maxParkedMemoryBytes`). */
  get parkedMemoryBytes(): number {
    return this.uploads.parkedMemoryBytes;
  }

  /** Number of uploads currently running or parked. */
  get size(): number {
    return this.uploads.size;
  }

  /** Aborts every running and parked upload. */
  close(): void {
    this.uploads.close();
  }

  /**
   * Serves one Write stream whose first message is `first` and whose later messages come from
   * `rest`; resolves with the committed size to answer. `rest` is not read past the answer.
   */
  async write(target: WriteTarget, first: bytestream.WriteRequest, rest: AsyncIterator<bytestream.WriteRequest>, opts: CallOptions = {}): Promise<bytestream.IWriteResponse> {
    const { resourceName, digest } = target;
    const compressor = target.compressor ?? 'identity';
    const cas = this.cas;
    const uploads = this.uploads;
    const key = uploadKey(target.uploadId, digest, compressor);

    // Early completion: a blob already present needs none of the client's bytes. REAPI: a compressed
    // upload answers committed_size -1 then, an uncompressed one the blob's size.
    const missing = await cas.findMissing([digest], { signal: opts.signal });
    if (missing.length === 0) {
      uploads.discard(key, StatusError.aborted(`Upload ${JSON.stringify(resourceName)} was superseded: the blob is already stored`));
      return { committedSize: compressor === 'identity' ? digest.sizeBytes : -1 };
    }

    // A whole blob in one message (most of Bazel's uploads: every blob of up to 16 KiB) needs no
    // resumable upload: it is verified and stored in one call, without the streaming machinery.
    const firstData = first.data;
    if (compressor !== 'identity' && first.finishWrite && first.writeOffset === 0 && firstData && uploads.get(key) === undefined) {
      if (firstData.length > maxCompressedSizeBytes(digest.sizeBytes)) throw tooMuchCompressed(digest, firstData.length);
      try {
        await cas.put(digest, decompressForStore(compressor, digest, single(firstData)), { signal: opts.signal });
      } catch (err) {
        throw wrapStatus(err, `Failed to store blob ${digest.toString()}`);
      }
      return { committedSize: firstData.length };
    }
    if (compressor === 'identity' && first.finishWrite && first.writeOffset === 0 && firstData?.length === digest.sizeBytes && uploads.get(key) === undefined) {
      try {
        await cas.put(digest, firstData, { signal: opts.signal });
      } catch (err) {
        throw wrapStatus(err, `Failed to store blob ${digest.toString()}`);
      }
      return { committedSize: digest.sizeBytes };
    }

    const upload = uploads.attach(key, digest, compressor, first.writeOffset, resourceName);
    try {
      let message = first;
      for (;;) {
        const done = await this.feed(upload, message, resourceName);
        if (done) return { committedSize: compressor === 'identity' ? digest.sizeBytes : upload.committedSizeBytes };
        const next = await rest.next();
        // The client half-closed without finish_write: keep what we have for a later Write to resume.
        if (next.done) return { committedSize: upload.committedSizeBytes };
        message = next.value;
      }
    } finally {
      uploads.detach(upload);
    }
  }

  /**
   * QueryWriteStatus: complete when the blob is stored, else the bytes received by the upload
   * named by `uploadId` (absent for a plain blob name); NOT_FOUND when there is neither.
   */
  async queryWriteStatus(
    resourceName: string,
    digest: Digest,
    uploadId: string | undefined,
    compressor: TransferCompressor | 'identity' = 'identity',
    opts: CallOptions = {},
  ): Promise<bytestream.IQueryWriteStatusResponse> {
    const missing = await this.cas.findMissing([digest], { signal: opts.signal });
    if (missing.length === 0) return { committedSize: compressor === 'identity' ? digest.sizeBytes : -1, complete: true };
    const upload = uploadId === undefined ? undefined : this.uploads.get(uploadKey(uploadId, digest, compressor));
    if (upload) return { committedSize: upload.committedSizeBytes, complete: false };
    throw StatusError.notFound(
      `Failed to query write status: no upload of ${JSON.stringify(resourceName)} is in progress (it may have expired) and the blob is not stored`,
    );
  }

  /** Hands one WriteRequest to the upload; true once the blob is stored. */
  private async feed(upload: PendingUpload, message: bytestream.WriteRequest, resourceName: string): Promise<boolean> {
    const digest = upload.digest;
    if (message.resourceName !== '' && message.resourceName !== resourceName) {
      throw badField('resource_name', `Resource name changed within one Write stream from ${JSON.stringify(resourceName)} to ${JSON.stringify(message.resourceName)}`);
    }
    if (message.writeOffset !== upload.committedSizeBytes) {
      throw badField('write_offset', `Write offset ${message.writeOffset} does not match the ${upload.committedSizeBytes} bytes received so far for ${digest.toString()}`);
    }
    const data = message.data ?? new Uint8Array(0);
    if (upload.compressor !== 'identity') {
      // Compressed bytes: the decompressor bounds the output at the declared size; this bounds the input.
      if (upload.committedSizeBytes + data.length > maxCompressedSizeBytes(digest.sizeBytes)) {
        const err = tooMuchCompressed(digest, upload.committedSizeBytes + data.length);
        this.uploads.discard(upload.key, err);
        throw err;
      }
    } else if (upload.committedSizeBytes + data.length > digest.sizeBytes) {
      const err = badField(
        'data',
        `Received ${upload.committedSizeBytes + data.length} bytes for blob ${digest.toString()}, more than its declared ${digest.sizeBytes}`,
      );
      this.uploads.discard(upload.key, err);
      throw err;
    }
    if (data.length > 0) await upload.push(data);
    if (!message.finishWrite) return false;
    if (upload.compressor === 'identity' && upload.committedSizeBytes !== digest.sizeBytes) {
      const err = badField('finish_write', `Write finished after ${upload.committedSizeBytes} of the ${digest.sizeBytes} bytes of blob ${digest.toString()}`);
      this.uploads.discard(upload.key, err);
      throw err;
    }
    await this.uploads.finish(upload);
    return true;
  }
}

function uploadKey(uploadId: string, digest: Digest, compressor: TransferCompressor | 'identity'): string {
  // Digest.key includes the instance name, so equal upload ids of two instances stay apart; offsets
  // of a compressed upload count other bytes, so it never continues an uncompressed one.
  return `${uploadId}\u0000${compressor}\u0000${digest.key}`;
}

async function* single(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

/**
 * The uncompressed bytes of a compressed upload, for the store's verifying put: decompression stops
 * past the declared size (a bomb), and the store checks size and hash of what comes out.
 */
function decompressForStore(compressor: TransferCompressor, digest: Digest, source: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  return decompressChunks(compressor, source, { maxOutputBytes: digest.sizeBytes, field: 'data' });
}

function tooMuchCompressed(digest: Digest, receivedBytes: number): StatusError {
  return badField('data', `Received ${receivedBytes} compressed bytes for blob ${digest.toString()}, more than any encoding of its ${digest.sizeBytes} bytes needs`);
}

/**
 * The uploads that are running or parked, keyed by upload id and digest. Owns their lifecycle:
 * creation, resumption, the idle timeout of parked ones and aborting them.
 */
class UploadRegistry {
  private readonly uploads = new Map<string, PendingUpload>();
  /** Sum of `bufferedBytes` of the parked uploads that were not spilled. */
  parkedMemoryBytes = 0;

  constructor(
    private readonly cas: BlobStore,
    private readonly clock: Clock,
    private readonly idleTimeoutMs: number,
    private readonly maxPendingUploads: number,
    private readonly maxParkedMemoryBytes: number,
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
  attach(key: string, digest: Digest, compressor: TransferCompressor | 'identity', writeOffset: number, resourceName: string): PendingUpload {
    const existing = this.uploads.get(key);
    if (existing?.attached) {
      throw StatusError.aborted(`Failed to write ${JSON.stringify(resourceName)}: another Write call is writing this upload; retry after it ends`);
    }
    if (writeOffset === 0) {
      if (existing) this.discard(key, StatusError.aborted(`Upload ${JSON.stringify(resourceName)} was restarted from offset 0`));
      this.makeRoom(resourceName);
      const upload = new PendingUpload(key, digest, compressor, this.cas);
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
    this.unpark(existing);
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
    this.park(upload);
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

  /** Keeps the upload's buffers within the parked budget, or spills it. */
  private park(upload: PendingUpload): void {
    if (this.parkedMemoryBytes + upload.bufferedBytes <= this.maxParkedMemoryBytes) {
      this.parkedMemoryBytes += upload.bufferedBytes;
      upload.countedAsParked = true;
      return;
    }
    upload.spill();
  }

  private unpark(upload: PendingUpload): void {
    if (!upload.countedAsParked) return;
    upload.countedAsParked = false;
    this.parkedMemoryBytes -= upload.bufferedBytes;
  }

  private remove(upload: PendingUpload): void {
    upload.cancelIdleTimer();
    this.unpark(upload);
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
  /** Bytes pushed since the store was last told to write out its buffers (an upper bound of what it holds). */
  bufferedBytes = 0;
  /** Parked with its buffers counted in the registry's budget. */
  countedAsParked = false;
  attached = false;
  failure?: StatusError;
  idleTimer?: AbortController;

  constructor(
    readonly key: string,
    readonly digest: Digest,
    /** How the pushed bytes are compressed; `committedSizeBytes` counts them as they come. */
    readonly compressor: TransferCompressor | 'identity',
    cas: BlobStore,
  ) {
    const data = compressor === 'identity' ? this.source : decompressForStore(compressor, digest, this.source);
    this.done = cas.put(digest, data, { signal: this.controller.signal });
    // Remember why the store gave up, and make sure the rejection is never unhandled.
    this.done.catch((err: unknown) => {
      this.failure ??= toStatusError(err);
      this.source.abort(this.failure);
    });
  }

  /** Queues a chunk (counted as received at once) and waits until the store has taken it. */
  async push(data: Uint8Array): Promise<void> {
    this.committedSizeBytes += data.length;
    this.bufferedBytes += data.length;
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

  /** Asks the store to write out and drop what it buffers (an empty chunk; see blob-store.ts). */
  spill(): void {
    this.bufferedBytes = 0;
    // Taken by the store when it next reads; a failure is the store's, reported by finish() or push().
    this.source.push(new Uint8Array(0)).catch(() => {});
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


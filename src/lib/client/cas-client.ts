/**
 * The client side of the CAS: everything a tool or a worker needs to move blobs in and out of a
 * remote ContentAddressableStorage efficiently and safely.
 *
 * - Uploads ask FindMissingBlobs first and send only what is absent; small blobs travel packed in
 *   BatchUpdateBlobs requests under the server's batch limit, large ones by ByteStream Write in
 *   1 MiB chunks read from disk, resuming from QueryWriteStatus after a dropped connection.
 * - Downloads stream to disk with backpressure and verify the hash before the file appears, so
 *   memory does not grow with blob size and a corrupt blob never lands under its final name.
 * - Idempotent calls are retried with bounded exponential backoff on UNAVAILABLE/DEADLINE_EXCEEDED.
 * Every error is a StatusError whose message names the step and the blob.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { abortable } from '../util/abort.js';
import { Digest, DigestSet } from '../digest/digest.js';
import { type DigestFunction, digestFunctionToProto, newHasher } from '../digest/digest-function.js';
import { Code, StatusError, hasCode, isAbortError, toStatusError, wrapStatus } from '../errors/status-error.js';
import { fsStatusError } from '../errors/fs-status.js';
import { reapi, bytestream } from '../proto/index.js';
import { byteStreamService, capabilitiesService, contentAddressableStorageService } from '../proto/services.js';
import { mapConcurrent } from '../util/concurrency.js';
import { MAX_MESSAGE_BYTES, MESSAGE_HEADROOM_BYTES, type RemoteCallOptions, type RemoteConnection, instanceRequestFields } from './connection.js';
import { type ResolvedRetryOptions, type RetryOptions, backoffMs, isRetryable, resolveRetryOptions, withRetry } from './retry.js';

/** Batch limit used when the server advertises none: one message, minus room for framing. */
export const DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES = MAX_MESSAGE_BYTES - MESSAGE_HEADROOM_BYTES;
/** Blobs above this size go through ByteStream even when a batch could hold them. */
export const DEFAULT_BYTESTREAM_THRESHOLD_BYTES = 1024 * 1024;
/** Payload bytes per ByteStream message. */
export const DEFAULT_CHUNK_SIZE_BYTES = 1024 * 1024;
/** Digests per FindMissingBlobs request (~80 bytes each, far under the message limit). */
export const FIND_MISSING_BATCH_DIGESTS = 10_000;
/** Conservative encoded size of one batch entry without its data (digest, tags, lengths). */
const BATCH_ENTRY_OVERHEAD_BYTES = 200;

export interface CasClientOptions {
  /** @default '' */
  instanceName?: string;
  /** @default 'sha256' */
  digestFunction?: DigestFunction;
  /** Overrides the limit from GetCapabilities; never above the 4 MiB message limit. */
  maxBatchTotalSizeBytes?: number;
  /** Requests in flight at once. @default 16 */
  concurrency?: number;
  retry?: RetryOptions;
  /** @default 1 MiB */
  byteStreamThresholdBytes?: number;
  /** @default 1 MiB */
  chunkSizeBytes?: number;
}

/** A blob to upload: bytes in memory, or a file read (streamed for large blobs) at upload time. */
export type UploadItem = { digest: Digest; data: Uint8Array } | { digest: Digest; path: string };

export interface UploadResult {
  /** Blobs the server lacked and that were sent. */
  uploadedBlobs: number;
  uploadedBytes: number;
  /** Blobs the server already had (or the empty blob), not sent. */
  skippedBlobs: number;
  skippedBytes: number;
}

export interface UploadOptions extends RemoteCallOptions {
  /** Called after each blob is stored, for progress reporting. */
  onBlobUploaded?: (digest: Digest) => void;
}

export interface DownloadFileItem {
  digest: Digest;
  path: string;
  isExecutable?: boolean;
}

/** A source of bytes that can be reopened at an offset, which is what makes a write resumable. */
type WriteSource = Uint8Array | { path: string } | AsyncIterable<Uint8Array>;

/**
 * Requests name the instance and digest function each Digest carries (digests of different
 * instances go in separate requests); the client's own `instanceName` and `digestFunction` are
 * what `digestOf`/`parseDigest` create and what Capabilities is asked for.
 */
export class CasClient {
  readonly instanceName: string;
  readonly digestFunction: DigestFunction;
  private readonly concurrency: number;
  private readonly retry: ResolvedRetryOptions;
  private readonly byteStreamThresholdBytes: number;
  private readonly chunkSizeBytes: number;
  private capabilities?: Promise<reapi.IServerCapabilities>;

  constructor(
    readonly connection: RemoteConnection,
    private readonly opts: CasClientOptions = {},
  ) {
    this.instanceName = opts.instanceName ?? '';
    this.digestFunction = opts.digestFunction ?? 'sha256';
    this.concurrency = opts.concurrency ?? 16;
    this.retry = resolveRetryOptions(opts.retry);
    this.byteStreamThresholdBytes = opts.byteStreamThresholdBytes ?? DEFAULT_BYTESTREAM_THRESHOLD_BYTES;
    this.chunkSizeBytes = opts.chunkSizeBytes ?? DEFAULT_CHUNK_SIZE_BYTES;
    if (opts.maxBatchTotalSizeBytes !== undefined && opts.maxBatchTotalSizeBytes <= BATCH_ENTRY_OVERHEAD_BYTES) {
      throw new TypeError(`maxBatchTotalSizeBytes must exceed ${BATCH_ENTRY_OVERHEAD_BYTES}, got ${opts.maxBatchTotalSizeBytes}`);
    }
  }

  /** The digest of `data` under this client's instance name and digest function. */
  digestOf(data: Uint8Array): Digest {
    return Digest.ofBytes(data, { instanceName: this.instanceName, digestFunction: this.digestFunction });
  }

  /** Parses `<hash>/<size>` under this client's instance name and digest function. */
  parseDigest(text: string): Digest {
    return Digest.parse(text, { instanceName: this.instanceName, digestFunction: this.digestFunction });
  }

  /**
   * The server's capabilities, asked once per client. The first remote call a command makes, so
   * callers pass a deadline to turn an unreachable server into a prompt error.
   */
  getCapabilities(opts: RemoteCallOptions = {}): Promise<reapi.IServerCapabilities> {
    let capabilities = this.capabilities;
    if (!capabilities) {
      capabilities = withRetry(
        this.retry,
        () => this.connection.unary(capabilitiesService.getCapabilities, { instanceName: this.instanceName }, opts),
        opts.signal,
      );
      // A failed attempt must not poison later calls.
      capabilities.catch(() => (this.capabilities = undefined));
      this.capabilities = capabilities;
    }
    return capabilities;
  }

  /** The largest total a batch request may carry: the server's advertised limit, capped by 4 MiB. */
  async maxBatchTotalSizeBytes(opts: RemoteCallOptions = {}): Promise<number> {
    if (this.opts.maxBatchTotalSizeBytes) return Math.min(this.opts.maxBatchTotalSizeBytes, DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES);
    let advertised = 0;
    try {
      advertised = (await this.getCapabilities(opts)).cacheCapabilities?.maxBatchTotalSizeBytes ?? 0;
    } catch (err) {
      // Servers without the Capabilities service still serve the CAS; fall back to the default.
      if (!hasCode(err, Code.UNIMPLEMENTED)) throw wrapStatus(err, `Failed to get the capabilities of ${this.connection.address}`);
    }
    return advertised > 0 ? Math.min(advertised, DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES) : DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES;
  }

  /** Returns the subset of `digests` that the CAS lacks, in argument order, deduplicated. */
  async findMissingBlobs(digests: readonly Digest[], opts: RemoteCallOptions = {}): Promise<Digest[]> {
    // Duplicates are rare and the server answers each absent blob once: only the (usually few)
    // missing digests are deduplicated, not a set built over every digest asked about.
    const asked = digests.filter((d) => !isEmptyBlob(d));
    const batches = groupByInstance(asked, (d) => d).flatMap((group) => chunk(group, FIND_MISSING_BATCH_DIGESTS));
    const missing = new Set<Digest>();
    await mapConcurrent(batches, this.concurrency, async (batch) => {
      const res = await this.call(`Failed to find missing blobs among ${batch.length} digest(s)`, opts, (o) =>
        this.connection.unary(
          contentAddressableStorageService.findMissingBlobs,
          // Digest values are encoded as they are (the FindMissingBlobs codec reads hash and sizeBytes).
          { ...requestFields(batch[0]!), blobDigests: batch },
          o,
        ),
      );
      for (const d of matchAnswered(batch, res.missingBlobDigests ?? [])) missing.add(d);
    });
    if (missing.size === 0) return [];
    const reported = new DigestSet();
    return asked.filter((d) => missing.has(d) && reported.add(d));
  }

  /**
   * Uploads whatever the CAS lacks among `items`. Small blobs are packed into BatchUpdateBlobs
   * requests, large ones are streamed with ByteStream Write (resumable). A rejected blob fails the
   * call with a StatusError naming it.
   */
  async uploadBlobs(items: readonly UploadItem[], opts: UploadOptions = {}): Promise<UploadResult> {
    const byKey = new Map<string, UploadItem>();
    for (const item of items) if (!byKey.has(item.digest.key)) byKey.set(item.digest.key, item);
    const unique = [...byKey.values()];
    const missing = new Set((await this.findMissingBlobs(unique.map((i) => i.digest), opts)).map((d) => d.key));
    const toSend = unique.filter((i) => missing.has(i.digest.key));
    const result: UploadResult = { uploadedBlobs: 0, uploadedBytes: 0, skippedBlobs: 0, skippedBytes: 0 };
    for (const i of unique) {
      if (!missing.has(i.digest.key)) {
        result.skippedBlobs++;
        result.skippedBytes += i.digest.sizeBytes;
      }
    }
    if (toSend.length === 0) return result;

    const limit = await this.maxBatchTotalSizeBytes(opts);
    const isSmall = (d: Digest) => d.sizeBytes <= this.byteStreamThresholdBytes && d.sizeBytes + BATCH_ENTRY_OVERHEAD_BYTES <= limit;
    const batches = groupByInstance(toSend.filter((i) => isSmall(i.digest)), (i) => i.digest).flatMap((group) =>
      packBatches(group, (i) => i.digest.sizeBytes, limit),
    );
    const large = toSend.filter((i) => !isSmall(i.digest));
    const done = (d: Digest) => {
      result.uploadedBlobs++;
      result.uploadedBytes += d.sizeBytes;
      opts.onBlobUploaded?.(d);
    };
    type Job = { batch: UploadItem[] } | { single: UploadItem };
    // Large blobs first: they take longest, and small batches fill the gaps.
    const jobs: Job[] = [...large.map((single) => ({ single })), ...batches.map((batch) => ({ batch }))];
    await mapConcurrent(jobs, this.concurrency, async (job) => {
      if ('single' in job) {
        const item = job.single;
        await this.writeBlob(item.digest, 'data' in item ? item.data : { path: item.path }, opts);
        done(item.digest);
      } else {
        await this.batchUpdate(job.batch, opts);
        job.batch.forEach((i) => done(i.digest));
      }
    });
    return result;
  }

  /**
   * Stores one blob without asking FindMissingBlobs first: BatchUpdateBlobs when small, ByteStream
   * Write otherwise (a stream always goes through ByteStream). The BlobStore `put` of GrpcBlobStore.
   */
  async putBlob(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts: RemoteCallOptions = {}): Promise<void> {
    if (isEmptyBlob(digest)) return;
    if (data instanceof Uint8Array) {
      const limit = await this.maxBatchTotalSizeBytes(opts);
      if (digest.sizeBytes <= this.byteStreamThresholdBytes && digest.sizeBytes + BATCH_ENTRY_OVERHEAD_BYTES <= limit) {
        if (data.length !== digest.sizeBytes) throw StatusError.invalidArgument(`Failed to upload blob ${digest}: got ${data.length} bytes`);
        return this.batchUpdate([{ digest, data }], opts);
      }
    }
    await this.writeBlob(digest, data, opts);
  }

  private async batchUpdate(batch: readonly UploadItem[], opts: RemoteCallOptions): Promise<void> {
    const requests = await Promise.all(batch.map(async (item) => ({ digest: item.digest.toProto(), data: await itemBytes(item) })));
    const res = await this.call(`Failed to upload ${batch.length} blob(s) with BatchUpdateBlobs`, opts, (o) =>
      this.connection.unary(contentAddressableStorageService.batchUpdateBlobs, { ...requestFields(batch[0]!.digest), requests }, o),
    );
    const statuses = new Map<string, reapi.BatchUpdateBlobsResponse.IResponse>();
    for (const r of res.responses ?? []) statuses.set(digestLike(batch[0]!.digest, r.digest, 'responses.digest').key, r);
    for (const item of batch) {
      const r = statuses.get(item.digest.key);
      if (!r) throw StatusError.internal(`Failed to upload blob ${item.digest}: the server returned no status for it`);
      if (r.status && r.status.code) throw wrapStatus(StatusError.fromProto(r.status), `Failed to upload blob ${item.digest}`);
    }
  }

  /**
   * Writes one blob with ByteStream Write in chunks. A byte array or file is resumable: after an
   * UNAVAILABLE the upload continues from the server's committed size (QueryWriteStatus); a one-shot
   * stream is not, and fails instead.
   */
  async writeBlob(digest: Digest, source: WriteSource, opts: RemoteCallOptions = {}): Promise<void> {
    const resourceName = digest.toByteStreamWritePath(randomUUID());
    const resumable = source instanceof Uint8Array || (typeof source === 'object' && 'path' in source);
    let offset = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.writeAttempt(resourceName, digest, offset, this.openSource(source, offset), opts);
        return;
      } catch (err) {
        const e = toStatusError(err);
        if (!resumable || attempt >= this.retry.maxAttempts || !isRetryable(this.retry, e) || opts.signal?.aborted) {
          throw wrapStatus(e, `Failed to write blob ${digest} with ByteStream`);
        }
        await this.sleepBeforeRetry(attempt, opts.signal);
        const status = await this.queryWriteStatus(resourceName, opts);
        if (status.complete) return;
        offset = status.committedSize;
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

  /** How much of an upload the server holds. An unknown upload counts as nothing committed. */
  async queryWriteStatus(resourceName: string, opts: RemoteCallOptions = {}): Promise<{ committedSize: number; complete: boolean }> {
    try {
      const res = await this.call(`Failed to query the status of upload ${JSON.stringify(resourceName)}`, opts, (o) =>
        this.connection.unary(byteStreamService.queryWriteStatus, { resourceName }, o),
      );
      return { committedSize: res.committedSize ?? 0, complete: res.complete ?? false };
    } catch (err) {
      if (hasCode(err, Code.NOT_FOUND) || hasCode(err, Code.UNIMPLEMENTED)) return { committedSize: 0, complete: false };
      throw err;
    }
  }

  /**
   * Streams a blob (or the range `offset`..`offset+limit`) with ByteStream Read, resuming after
   * UNAVAILABLE from the last byte received. NOT_FOUND surfaces from the iterator.
   */
  async *readStream(digest: Digest, opts: RemoteCallOptions & { offset?: number; limit?: number } = {}): AsyncGenerator<Uint8Array> {
    const start = opts.offset ?? 0;
    if (start < 0 || start > digest.sizeBytes) throw StatusError.outOfRange(`Failed to read blob ${digest}: offset ${start} is outside the blob`);
    const end = opts.limit ? Math.min(digest.sizeBytes, start + opts.limit) : digest.sizeBytes;
    let position = start;
    // A zero-size digest with another hash is not the empty blob: let the server answer for it.
    if (position >= end && (digest.sizeBytes > 0 || isEmptyBlob(digest))) return;
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
        if (attempt >= this.retry.maxAttempts || !isRetryable(this.retry, e) || opts.signal?.aborted) {
          throw e.message.startsWith('Failed to read blob') ? e : wrapStatus(e, `Failed to read blob ${digest}`);
        }
        await this.sleepBeforeRetry(attempt, opts.signal);
      }
    }
  }

  /** The whole blob in memory, hash-verified. Use `downloadToFile` for blobs of unbounded size. */
  async readBlob(digest: Digest, opts: RemoteCallOptions = {}): Promise<Uint8Array> {
    if (isEmptyBlob(digest)) return new Uint8Array(0);
    const limit = await this.maxBatchTotalSizeBytes(opts);
    if (digest.sizeBytes <= this.byteStreamThresholdBytes && digest.sizeBytes + BATCH_ENTRY_OVERHEAD_BYTES <= limit) {
      const got = await this.batchRead([digest], opts);
      return got.get(digest.key)!;
    }
    const out = new Uint8Array(digest.sizeBytes);
    let position = 0;
    for await (const data of this.readStream(digest, opts)) {
      out.set(data, position);
      position += data.length;
    }
    this.verify(digest, out);
    return out;
  }

  /** Reads many blobs, small ones packed into BatchReadBlobs. Resolves to bytes by `Digest.key`. */
  async downloadBlobs(digests: readonly Digest[], opts: RemoteCallOptions = {}): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>();
    const { batches, large } = await this.planReads(dedupe(digests), opts);
    await mapConcurrent([...large.map((d) => [d]), ...batches], this.concurrency, async (group) => {
      if (group.length === 1 && large.includes(group[0]!)) out.set(group[0]!.key, await this.readBlob(group[0]!, opts));
      else for (const [k, v] of await this.batchRead(group, opts)) out.set(k, v);
    });
    for (const d of digests) if (isEmptyBlob(d)) out.set(d.key, new Uint8Array(0));
    return out;
  }

  /**
   * Streams a blob into `path` through a temporary file in the same directory, verifying the hash
   * before renaming it into place. Memory stays at a chunk or two whatever the blob size.
   */
  async downloadToFile(digest: Digest, path: string, opts: RemoteCallOptions & { isExecutable?: boolean } = {}): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const temp = `${path}.bzutil-${randomUUID()}.tmp`;
    const hasher = newHasher(digest.digestFunction);
    let sizeBytes = 0;
    const source = this.readStream(digest, opts);
    async function* hashing(): AsyncGenerator<Uint8Array> {
      for await (const data of source) {
        hasher.update(data);
        sizeBytes += data.length;
        yield data;
      }
    }
    try {
      await pipeline(Readable.from(hashing(), { objectMode: false }), createWriteStream(temp, { mode: opts.isExecutable ? 0o755 : 0o644 }));
      const hash = hasher.digest('hex');
      if (hash !== digest.hash || sizeBytes !== digest.sizeBytes) {
        throw new StatusError(Code.DATA_LOSS, `Failed to download blob ${digest}: received ${hash}/${sizeBytes}`);
      }
      await rename(temp, path);
    } catch (err) {
      await rm(temp, { force: true });
      if (err instanceof StatusError) throw err;
      if (isAbortError(err)) throw StatusError.cancelled(`Download of blob ${digest} was cancelled`);
      throw wrapStatus(fsStatusError(err), `Failed to write blob ${digest} to ${JSON.stringify(path)}`);
    }
  }

  /**
   * Downloads many blobs to files. Small blobs travel in batches and are written from memory
   * (bounded by concurrency x batch size); large ones stream to disk. A digest wanted at several
   * paths is fetched once.
   */
  async downloadToFiles(items: readonly DownloadFileItem[], opts: RemoteCallOptions = {}): Promise<void> {
    const pathsByKey = new Map<string, DownloadFileItem[]>();
    for (const item of items) {
      const list = pathsByKey.get(item.digest.key);
      if (list) list.push(item);
      else pathsByKey.set(item.digest.key, [item]);
    }
    const digests = [...pathsByKey.values()].map((l) => l[0]!.digest);
    const { batches, large } = await this.planReads(digests.filter((d) => !isEmptyBlob(d)), opts);
    const writeAll = async (digest: Digest, data: Uint8Array) => {
      for (const item of pathsByKey.get(digest.key)!) await writeFileAtomic(item.path, data, item.isExecutable ?? false);
    };
    type Job = { batch: Digest[] } | { single: Digest } | { empty: Digest };
    const jobs: Job[] = [
      ...large.map((single) => ({ single })),
      ...batches.map((batch) => ({ batch })),
      ...digests.filter((d) => isEmptyBlob(d)).map((empty) => ({ empty })),
    ];
    await mapConcurrent(jobs, this.concurrency, async (job) => {
      if ('single' in job) {
        const [firstItem, ...rest] = pathsByKey.get(job.single.key)!;
        await this.downloadToFile(job.single, firstItem!.path, { ...opts, isExecutable: firstItem!.isExecutable });
        for (const item of rest) {
          // Copies of a large blob stream again rather than buffering it.
          await this.downloadToFile(job.single, item.path, { ...opts, isExecutable: item.isExecutable });
        }
      } else if ('batch' in job) {
        const got = await this.batchRead(job.batch, opts);
        for (const d of job.batch) await writeAll(d, got.get(d.key)!);
      } else {
        await writeAll(job.empty, new Uint8Array(0));
      }
    });
  }

  /** Every Directory below (and including) `rootDigest`, collecting all pages of GetTree. */
  async getTree(rootDigest: Digest, opts: RemoteCallOptions = {}): Promise<reapi.IDirectory[]> {
    let directories: reapi.IDirectory[] = [];
    let pageToken = '';
    for (let attempt = 1; ; attempt++) {
      try {
        const request = { ...requestFields(rootDigest), rootDigest: rootDigest.toProto(), pageToken };
        for await (const page of this.connection.serverStream(contentAddressableStorageService.getTree, request, opts)) {
          directories.push(...(page.directories ?? []));
          pageToken = page.nextPageToken ?? '';
        }
        return directories;
      } catch (err) {
        const e = toStatusError(err);
        if (attempt >= this.retry.maxAttempts || !isRetryable(this.retry, e) || opts.signal?.aborted) {
          throw wrapStatus(e, `Failed to get the tree of directory ${rootDigest}`);
        }
        // Resume after the last complete page; without a token, start over.
        if (!pageToken) directories = [];
        await this.sleepBeforeRetry(attempt, opts.signal);
      }
    }
  }

  private async planReads(digests: readonly Digest[], opts: RemoteCallOptions): Promise<{ batches: Digest[][]; large: Digest[] }> {
    const limit = await this.maxBatchTotalSizeBytes(opts);
    const nonEmpty = digests.filter((d) => !isEmptyBlob(d));
    const isSmall = (d: Digest) => d.sizeBytes <= this.byteStreamThresholdBytes && d.sizeBytes + BATCH_ENTRY_OVERHEAD_BYTES <= limit;
    return {
      batches: groupByInstance(nonEmpty.filter(isSmall), (d) => d).flatMap((group) => packBatches(group, (d) => d.sizeBytes, limit)),
      large: nonEmpty.filter((d) => !isSmall(d)),
    };
  }

  private async batchRead(digests: readonly Digest[], opts: RemoteCallOptions): Promise<Map<string, Uint8Array>> {
    const res = await this.call(`Failed to read ${digests.length} blob(s) with BatchReadBlobs`, opts, (o) =>
      this.connection.unary(contentAddressableStorageService.batchReadBlobs, { ...requestFields(digests[0]!), digests: digests.map((d) => d.toProto()) }, o),
    );
    const byKey = new Map<string, reapi.BatchReadBlobsResponse.IResponse>();
    for (const r of res.responses ?? []) byKey.set(digestLike(digests[0]!, r.digest, 'responses.digest').key, r);
    const out = new Map<string, Uint8Array>();
    for (const d of digests) {
      const r = byKey.get(d.key);
      if (!r) throw StatusError.internal(`Failed to read blob ${d}: the server returned no status for it`);
      if (r.status && r.status.code) throw wrapStatus(StatusError.fromProto(r.status), `Failed to read blob ${d}`);
      const data = r.data ?? new Uint8Array(0);
      this.verify(d, data);
      out.set(d.key, data);
    }
    return out;
  }

  private verify(digest: Digest, data: Uint8Array): void {
    const got = Digest.ofBytes(data, { digestFunction: digest.digestFunction });
    if (got.hash !== digest.hash || got.sizeBytes !== digest.sizeBytes) {
      throw new StatusError(Code.DATA_LOSS, `Failed to read blob ${digest}: received data hashes to ${got}`);
    }
  }

  /** An idempotent unary call with retries; failures are prefixed with `step`. */
  private async call<T>(step: string, opts: RemoteCallOptions, fn: (opts: RemoteCallOptions) => Promise<T>): Promise<T> {
    try {
      return await withRetry(this.retry, () => fn(opts), opts.signal);
    } catch (err) {
      throw wrapStatus(err, step);
    }
  }

  private async sleepBeforeRetry(attempt: number, signal?: AbortSignal): Promise<void> {
    try {
      await this.retry.clock.sleep(backoffMs(this.retry, attempt), signal);
    } catch {
      throw StatusError.cancelled('The call was cancelled while waiting to retry');
    }
  }

}

/** Greedy packing in argument order: each batch's sizes plus per-entry overhead stay within `limitBytes`. */
export function packBatches<T>(items: readonly T[], sizeOf: (item: T) => number, limitBytes: number): T[][] {
  const batches: T[][] = [];
  let current: T[] = [];
  let total = 0;
  for (const item of items) {
    const cost = sizeOf(item) + BATCH_ENTRY_OVERHEAD_BYTES;
    if (current.length > 0 && total + cost > limitBytes) {
      batches.push(current);
      current = [];
      total = 0;
    }
    current.push(item);
    total += cost;
  }
  if (current.length) batches.push(current);
  return batches;
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

/** The empty blob of a digest's function: always present, never sent. */
function isEmptyBlob(d: Digest): boolean {
  return d.sizeBytes === 0 && d.hash === Digest.empty({ digestFunction: d.digestFunction }).hash;
}

/** Request fields naming the instance and digest function of `d` (requests never mix them). */
function requestFields(d: Digest): { instanceName: string; digestFunction?: number } {
  return instanceRequestFields(d.instanceName, d.digestFunction);
}

/** A digest from a response, under the instance and function of the request it answers. */
function digestLike(like: Digest, proto: reapi.IDigest | null | undefined, field: string): Digest {
  return Digest.fromProto(like.instanceName, digestFunctionToProto(like.digestFunction), proto, field);
}

/**
 * The digests of `batch` that a FindMissingBlobs answer names, without re-parsing the answer: servers
 * (ours included) answer in request order, so a forward scan matches each entry in passing; entries
 * out of order fall back to a lookup table, and entries that were never asked about are ignored.
 */
function matchAnswered(batch: readonly Digest[], answered: readonly reapi.IDigest[]): Digest[] {
  const out: Digest[] = [];
  let next = 0;
  let byName: Map<string, Digest> | undefined;
  for (const a of answered) {
    const hash = a.hash ?? '';
    const sizeBytes = Number(a.sizeBytes ?? 0);
    let found: Digest | undefined;
    for (let i = next; i < batch.length; i++) {
      const d = batch[i]!;
      if (d.hash === hash && d.sizeBytes === sizeBytes) {
        found = d;
        next = i + 1;
        break;
      }
    }
    if (!found) {
      byName ??= new Map(batch.map((d) => [`${d.hash}/${d.sizeBytes}`, d]));
      found = byName.get(`${hash}/${sizeBytes}`);
    }
    if (found) out.push(found);
  }
  return out;
}

/** Splits items by the instance name and digest function of their digests, keeping order. */
function groupByInstance<T>(items: readonly T[], digestOf: (item: T) => Digest): T[][] {
  if (items.length === 0) return [];
  // The common case: one instance and one function, with no key to build per item.
  const first = digestOf(items[0]!);
  const sameAsFirst = (item: T): boolean => {
    const d = digestOf(item);
    return d.instanceName === first.instanceName && d.digestFunction === first.digestFunction;
  };
  if (items.every(sameAsFirst)) return [[...items]];
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const d = digestOf(item);
    const key = `${d.instanceName}\u0000${d.digestFunction}`;
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return [...groups.values()];
}

function dedupe(digests: readonly Digest[]): Digest[] {
  const seen = new Set<string>();
  return digests.filter((d) => (seen.has(d.key) ? false : (seen.add(d.key), true)));
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

async function itemBytes(item: UploadItem): Promise<Uint8Array> {
  if ('data' in item) return item.data;
  const file = await open(item.path, 'r').catch((err) => {
    throw wrapStatus(fsStatusError(err), `Failed to open ${JSON.stringify(item.path)} for blob ${item.digest}`);
  });
  try {
    // Read one byte more than expected, to notice a file that grew since it was hashed.
    const buffer = Buffer.alloc(item.digest.sizeBytes + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await file.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) break;
    }
    if (length !== item.digest.sizeBytes) {
      throw StatusError.failedPrecondition(`File ${JSON.stringify(item.path)} no longer has ${item.digest.sizeBytes} bytes; was it modified after hashing?`);
    }
    return buffer.subarray(0, length);
  } finally {
    await file.close();
  }
}

async function writeFileAtomic(path: string, data: Uint8Array, isExecutable: boolean): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.bzutil-${randomUUID()}.tmp`;
  try {
    const file = await open(temp, 'w', isExecutable ? 0o755 : 0o644);
    try {
      await file.writeFile(data);
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw wrapStatus(fsStatusError(err), `Failed to write ${JSON.stringify(path)}`);
  }
}

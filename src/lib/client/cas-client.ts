/**
 * The client side of the CAS: everything a tool or a worker needs to move blobs in and out of a
 * remote ContentAddressableStorage efficiently and safely.
 *
 * - Uploads ask FindMissingBlobs first and send only what is absent; small blobs travel packed in
 *   BatchUpdateBlobs requests under the server's batch limit, large ones by ByteStream Write in
 *   1 MiB chunks read from disk, resuming from QueryWriteStatus after a dropped connection; from
 *   8 MiB on, as content-defined chunks spliced by the server where it offers SplitBlob/SpliceBlob.
 * - Downloads stream to disk with backpressure and verify the hash before the file appears, so
 *   memory does not grow with blob size and a corrupt blob never lands under its final name.
 * - Idempotent calls are retried with bounded exponential backoff on UNAVAILABLE/DEADLINE_EXCEEDED,
 *   by the one policy of retry.ts.
 * The rooms: blob-batches.ts packs requests, byte-stream-client.ts streams large blobs, local-files.ts
 * reads and writes the files. Every error is a StatusError whose message names the step and the blob.
 */
import { compressBytes, decompressBytes } from '../compression/codec.js';
import { compressorFromProto, compressorToProto, type TransferCompressor } from '../compression/compressor.js';
import { Digest, DigestSet } from '../digest/digest.js';
import { Code, StatusError, toStatusError, wrapStatus } from '../errors/status-error.js';
import type { reapi } from '../proto/index.js';
import { contentAddressableStorageService } from '../proto/services.js';
import { mapConcurrent } from '../util/concurrency.js';
import {
  BATCH_ENTRY_OVERHEAD_BYTES,
  chunk,
  dedupe,
  digestLike,
  fitsInBatch,
  groupByInstance,
  matchAnswered,
  planBatches,
  requestFields,
} from './blob-batches.js';
import { ByteStreamClient, type WriteSource } from './byte-stream-client.js';
import { ChunkedTransfer, DEFAULT_CHUNKED_THRESHOLD_BYTES } from './chunked-transfer.js';
import { FIND_MISSING_BATCH_DIGESTS } from '../proto/message-limits.js';
import { type RemoteCallOptions, type RemoteConnection } from './connection.js';
import { readFileOfSize, writeFileAtomic, writeStreamVerified } from './local-files.js';
import { pauseBeforeRetry, withRetry } from './retry.js';
import { ServerCapabilities, type TransferCompressors } from './server-capabilities.js';
import { ServiceClient, type ServiceClientOptions } from './service-client.js';

export { packBatches } from './blob-batches.js';
export { FIND_MISSING_BATCH_DIGESTS } from '../proto/message-limits.js';

/** Batch limit used when the server advertises none (and the cap on what it advertises). */
export { DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES } from './server-capabilities.js';
/** Blobs above this size go through ByteStream even when a batch could hold them. */
export const DEFAULT_BYTESTREAM_THRESHOLD_BYTES = 1024 * 1024;
/** Payload bytes per ByteStream message. */
export const DEFAULT_CHUNK_SIZE_BYTES = 1024 * 1024;

export interface CasClientOptions extends ServiceClientOptions {
  /** Overrides the limit from GetCapabilities; never above the 4 MiB message limit. */
  maxBatchTotalSizeBytes?: number;
  /** Requests in flight at once. @default 16 */
  concurrency?: number;
  /** @default 1 MiB */
  byteStreamThresholdBytes?: number;
  /** @default 1 MiB */
  chunkSizeBytes?: number;
  /**
   * Moves blobs compressed with this compressor where the server advertises it (ByteStream
   * `compressed-blobs/` and the batch calls' compressor fields); plain where it does not.
   */
  compressor?: TransferCompressor;
  /** Blobs from this size on move as chunks where the server splits/splices (chunked-transfer.ts). @default 8 MiB */
  chunkedThresholdBytes?: number;
  /** Directory of chunks kept between downloads; without one, downloads are never chunked. */
  chunkCacheDir?: string;
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
  /** Of the uploaded blobs, those spliced from chunks, and the chunk bytes actually sent for them. */
  splicedBlobs?: number;
  splicedBytesSent?: number;
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

/**
 * Requests name the instance and digest function each Digest carries (digests of different
 * instances go in separate requests); the client's own `instanceName` and `digestFunction` are
 * what `digestOf`/`parseDigest` create and what Capabilities is asked for.
 */
export class CasClient extends ServiceClient {
  private readonly concurrency: number;
  private readonly byteStreamThresholdBytes: number;
  private readonly byteStream: ByteStreamClient;
  private readonly server: ServerCapabilities;
  private readonly chunked: ChunkedTransfer;
  private readonly chunkedThresholdBytes: number;

  constructor(
    connection: RemoteConnection,
    private readonly opts: CasClientOptions = {},
  ) {
    super(connection, opts);
    this.concurrency = opts.concurrency ?? 16;
    this.byteStreamThresholdBytes = opts.byteStreamThresholdBytes ?? DEFAULT_BYTESTREAM_THRESHOLD_BYTES;
    this.byteStream = new ByteStreamClient(connection, this.retry, opts.chunkSizeBytes ?? DEFAULT_CHUNK_SIZE_BYTES);
    this.server = new ServerCapabilities(connection, this.retry, this.instanceName, opts);
    this.chunked = new ChunkedTransfer(connection, this.retry, this, opts.chunkCacheDir);
    this.chunkedThresholdBytes = opts.chunkedThresholdBytes ?? DEFAULT_CHUNKED_THRESHOLD_BYTES;
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
    return this.server.capabilities(opts);
  }

  /** The largest total a batch request may carry: the server's advertised limit, capped by 4 MiB. */
  maxBatchTotalSizeBytes(opts: RemoteCallOptions = {}): Promise<number> {
    return this.server.maxBatchTotalSizeBytes(opts);
  }

  private transferCompressors(opts: RemoteCallOptions): Promise<TransferCompressors> {
    return this.server.transferCompressors(opts);
  }

  /** Returns the subset of `digests` that the CAS lacks, in argument order, deduplicated. */
  async findMissingBlobs(digests: readonly Digest[], opts: RemoteCallOptions = {}): Promise<Digest[]> {
    // Duplicates are rare and the server answers each absent blob once: only the (usually few)
    // missing digests are deduplicated, not a set built over every digest asked about.
    const asked = digests.filter((d) => !d.isEmpty);
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
    const isSmall = (d: Digest) => fitsInBatch(d, this.byteStreamThresholdBytes, limit);
    const batches = planBatches(toSend.filter((i) => isSmall(i.digest)), (i) => i.digest, limit);
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
        await this.uploadLarge(job.single, result, opts);
        done(job.single.digest);
      } else {
        await this.batchUpdate(job.batch, opts);
        job.batch.forEach((i) => done(i.digest));
      }
    });
    return result;
  }

  /** A large blob: as chunks where the server splices them (chunked-transfer.ts), else by ByteStream. */
  private async uploadLarge(item: UploadItem, result: UploadResult, opts: RemoteCallOptions): Promise<void> {
    const source = 'data' in item ? item.data : { path: item.path };
    const chunking = item.digest.sizeBytes >= this.chunkedThresholdBytes ? await this.server.chunking(opts) : undefined;
    const spliced = chunking?.splice ? await this.chunked.upload(item.digest, source, chunking.params, opts) : undefined;
    if (!spliced) return this.writeBlob(item.digest, source, opts);
    result.splicedBlobs = (result.splicedBlobs ?? 0) + 1;
    result.splicedBytesSent = (result.splicedBytesSent ?? 0) + spliced.sentBytes;
  }

  /**
   * Stores one blob without asking FindMissingBlobs first: BatchUpdateBlobs when small, ByteStream
   * Write otherwise (a stream always goes through ByteStream). The BlobStore `put` of GrpcBlobStore.
   */
  async putBlob(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts: RemoteCallOptions = {}): Promise<void> {
    if (digest.isEmpty) return;
    if (data instanceof Uint8Array) {
      const limit = await this.maxBatchTotalSizeBytes(opts);
      if (fitsInBatch(digest, this.byteStreamThresholdBytes, limit)) {
        if (data.length !== digest.sizeBytes) throw StatusError.invalidArgument(`Failed to upload blob ${digest}: got ${data.length} bytes`);
        return this.batchUpdate([{ digest, data }], opts);
      }
    }
    await this.writeBlob(digest, data, opts);
  }

  private async batchUpdate(batch: readonly UploadItem[], opts: RemoteCallOptions): Promise<void> {
    const compressor = (await this.transferCompressors(opts)).batchUpdate;
    const requests = await Promise.all(
      batch.map(async (item) => {
        const data = await ('data' in item ? item.data : readFileOfSize(item.path, item.digest));
        if (!compressor) return { digest: item.digest.toProto(), data };
        return { digest: item.digest.toProto(), data: await compressBytes(compressor, data), compressor: compressorToProto(compressor) };
      }),
    );
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

  /** Writes one blob with ByteStream Write (resumable for bytes and files). See ByteStreamClient.write. */
  async writeBlob(digest: Digest, source: WriteSource, opts: RemoteCallOptions = {}): Promise<void> {
    const { byteStream: compressor } = await this.transferCompressors(opts);
    return this.byteStream.write(digest, source, { ...opts, compressor });
  }

  /** How much of an upload the server holds. See ByteStreamClient.queryWriteStatus. */
  queryWriteStatus(resourceName: string, opts: RemoteCallOptions = {}): Promise<{ committedSize: number; complete: boolean }> {
    return this.byteStream.queryWriteStatus(resourceName, opts);
  }

  /** Streams a blob or a range of it with ByteStream Read, resuming after UNAVAILABLE. */
  async *readStream(digest: Digest, opts: RemoteCallOptions & { offset?: number; limit?: number } = {}): AsyncGenerator<Uint8Array> {
    const { byteStream: compressor } = await this.transferCompressors(opts);
    yield* this.byteStream.read(digest, { ...opts, compressor });
  }

  /** The whole blob in memory, hash-verified. Use `downloadToFile` for blobs of unbounded size. */
  async readBlob(digest: Digest, opts: RemoteCallOptions = {}): Promise<Uint8Array> {
    if (digest.isEmpty) return new Uint8Array(0);
    const limit = await this.maxBatchTotalSizeBytes(opts);
    if (fitsInBatch(digest, this.byteStreamThresholdBytes, limit)) {
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
    for (const d of digests) if (d.isEmpty) out.set(d.key, new Uint8Array(0));
    return out;
  }

  /**
   * Streams a blob into `path` through a temporary file in the same directory, verifying the hash
   * before renaming it into place. Memory stays at a chunk or two whatever the blob size.
   */
  async downloadToFile(digest: Digest, path: string, opts: RemoteCallOptions & { isExecutable?: boolean } = {}): Promise<void> {
    // Through the chunk cache where there is one and the server splits: only absent chunks travel.
    const chunked = this.chunked.hasChunkCache && digest.sizeBytes >= this.chunkedThresholdBytes;
    if (chunked && (await this.server.chunking(opts))?.split && (await this.chunked.download(digest, path, opts.isExecutable ?? false, opts))) return;
    await writeStreamVerified(digest, this.readStream(digest, opts), path, opts.isExecutable ?? false);
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
    const { batches, large } = await this.planReads(digests.filter((d) => !d.isEmpty), opts);
    const writeAll = async (digest: Digest, data: Uint8Array) => {
      for (const item of pathsByKey.get(digest.key)!) await writeFileAtomic(item.path, data, item.isExecutable ?? false);
    };
    type Job = { batch: Digest[] } | { single: Digest } | { empty: Digest };
    const jobs: Job[] = [
      ...large.map((single) => ({ single })),
      ...batches.map((batch) => ({ batch })),
      ...digests.filter((d) => d.isEmpty).map((empty) => ({ empty })),
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
        if (!(await pauseBeforeRetry(this.retry, attempt, e, opts.signal))) throw wrapStatus(e, `Failed to get the tree of directory ${rootDigest}`);
        // Resume after the last complete page; without a token, start over.
        if (!pageToken) directories = [];
      }
    }
  }

  private async planReads(digests: readonly Digest[], opts: RemoteCallOptions): Promise<{ batches: Digest[][]; large: Digest[] }> {
    const limit = await this.maxBatchTotalSizeBytes(opts);
    const nonEmpty = digests.filter((d) => !d.isEmpty);
    const isSmall = (d: Digest) => fitsInBatch(d, this.byteStreamThresholdBytes, limit);
    return {
      batches: planBatches(nonEmpty.filter(isSmall), (d) => d, limit),
      large: nonEmpty.filter((d) => !isSmall(d)),
    };
  }

  private async batchRead(digests: readonly Digest[], opts: RemoteCallOptions): Promise<Map<string, Uint8Array>> {
    // BatchReadBlobs has no capability of its own: acceptable_compressors follows supported_compressors.
    const { byteStream: compressor } = await this.transferCompressors(opts);
    const acceptable = compressor ? { acceptableCompressors: [compressorToProto(compressor)] } : {};
    const res = await this.call(`Failed to read ${digests.length} blob(s) with BatchReadBlobs`, opts, (o) =>
      this.connection.unary(
        contentAddressableStorageService.batchReadBlobs,
        { ...requestFields(digests[0]!), digests: digests.map((d) => d.toProto()), ...acceptable },
        o,
      ),
    );
    const byKey = new Map<string, reapi.BatchReadBlobsResponse.IResponse>();
    for (const r of res.responses ?? []) byKey.set(digestLike(digests[0]!, r.digest, 'responses.digest').key, r);
    const out = new Map<string, Uint8Array>();
    for (const d of digests) {
      const r = byKey.get(d.key);
      if (!r) throw StatusError.internal(`Failed to read blob ${d}: the server returned no status for it`);
      if (r.status && r.status.code) throw wrapStatus(StatusError.fromProto(r.status), `Failed to read blob ${d}`);
      let data = r.data ?? new Uint8Array(0);
      const sent = compressorFromProto(r.compressor);
      if (sent === undefined || (sent !== 'identity' && sent !== compressor)) {
        throw StatusError.internal(`Failed to read blob ${d}: the server sent it with compressor ${r.compressor}, which was not asked for`);
      }
      if (sent !== 'identity') data = await decompressBytes(sent, data, { maxOutputBytes: d.sizeBytes });
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
}

/**
 * Large blobs moved as content-defined chunks (REAPI 2.4+ SplitBlob/SpliceBlob), used by CasClient
 * when the server advertises both and FastCDC 2020 parameters:
 * - upload: cut the blob locally with the server's parameters, upload the chunks the CAS lacks
 *   (FindMissingBlobs, then batches), and ask the server to SpliceBlob them. A blob that changed a
 *   little since its last upload sends only its changed chunks.
 * - download (only with a local chunk cache): SplitBlob, fetch the chunks the cache lacks, and
 *   assemble the file from the cache, hash-verified. Without a cache there is nothing to reuse and
 *   the plain ByteStream read is as cheap.
 * Memory stays bounded: chunks travel in windows of CHUNK_WINDOW_BYTES. Any failure of the chunked
 * path that a plain transfer can recover from (a server that stopped serving it, a chunk evicted
 * before the splice) falls back to the plain transfer, so chunking never makes a transfer fail
 * that would otherwise succeed.
 */
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { chunkStream, type FastCdcParams } from '../cas/fastcdc.js';
import { MAX_SPLICE_EXPECTED_CHUNKS } from '../proto/message-limits.js';
import { Digest } from '../digest/digest.js';
import { digestFunctionToProto, newHasher } from '../digest/digest-function.js';
import { Code, StatusError, hasCode, wrapStatus } from '../errors/status-error.js';
import { reapi } from '../proto/index.js';
import { contentAddressableStorageService } from '../proto/services.js';
import { type RemoteCallOptions, type RemoteConnection, instanceRequestFields } from './connection.js';
import { writeStreamVerified } from './local-files.js';
import { type ResolvedRetryOptions, withRetry } from './retry.js';

/** Chunk bytes held in memory at once while uploading or downloading. */
const CHUNK_WINDOW_BYTES = 16 * 1024 * 1024;
/** Blobs from this size on move as chunks, by default. */
export const DEFAULT_CHUNKED_THRESHOLD_BYTES = 8 * 1024 * 1024;

/** What chunked transfers need of CasClient (passed in, so that neither module imports the other). */
export interface ChunkTransport {
  /** Uploads the blobs the CAS lacks (FindMissingBlobs first); says how many bytes were sent. */
  uploadBlobs(items: readonly { digest: Digest; data: Uint8Array }[], opts: RemoteCallOptions): Promise<{ uploadedBlobs: number; uploadedBytes: number }>;
  downloadBlobs(digests: readonly Digest[], opts: RemoteCallOptions): Promise<Map<string, Uint8Array>>;
}

export interface ChunkedUploadResult {
  chunks: number;
  /** Chunks the server lacked, and their bytes: what was sent. */
  sentChunks: number;
  sentBytes: number;
}

export class ChunkedTransfer {
  constructor(
    private readonly connection: RemoteConnection,
    private readonly retry: ResolvedRetryOptions,
    private readonly transport: ChunkTransport,
    /** Directory of chunks kept between downloads; none: downloads are never chunked. */
    private readonly chunkCacheDir?: string,
  ) {}

  get hasChunkCache(): boolean {
    return this.chunkCacheDir !== undefined;
  }

  /**
   * Uploads `digest` (bytes or a file) as chunks and splices it. Undefined when the server refused
   * the splice in a way a plain upload avoids (the caller then uploads it plainly).
   */
  async upload(digest: Digest, source: Uint8Array | { path: string }, params: FastCdcParams, opts: RemoteCallOptions): Promise<ChunkedUploadResult | undefined> {
    // Too many chunks for one SpliceBlob message: the blob goes whole.
    if (digest.sizeBytes / params.avgChunkSizeBytes > MAX_SPLICE_EXPECTED_CHUNKS) return undefined;
    const result: ChunkedUploadResult = { chunks: 0, sentChunks: 0, sentBytes: 0 };
    const chunkDigests: Digest[] = [];
    const hasher = newHasher(digest.digestFunction);
    let window: { digest: Digest; data: Uint8Array }[] = [];
    let windowBytes = 0;
    const flush = async () => {
      const sent = await this.transport.uploadBlobs(window, opts);
      result.sentChunks += sent.uploadedBlobs;
      result.sentBytes += sent.uploadedBytes;
      window = [];
      windowBytes = 0;
    };
    const bytes = source instanceof Uint8Array ? (async function* () { yield source; })() : createReadStream(source.path, { highWaterMark: 1024 * 1024 });
    let sizeBytes = 0;
    for await (const data of chunkStream(bytes, params)) {
      hasher.update(data);
      sizeBytes += data.length;
      const chunk = Digest.ofBytes(data, { instanceName: digest.instanceName, digestFunction: digest.digestFunction });
      chunkDigests.push(chunk);
      window.push({ digest: chunk, data: Uint8Array.prototype.slice.call(data) });
      windowBytes += data.length;
      if (windowBytes >= CHUNK_WINDOW_BYTES) await flush();
    }
    await flush();
    result.chunks = chunkDigests.length;
    const hash = hasher.digest('hex');
    if (hash !== digest.hash || sizeBytes !== digest.sizeBytes) {
      throw StatusError.invalidArgument(`Failed to upload blob ${digest}: its bytes hash to ${hash}/${sizeBytes} (did the file change while it was read?)`);
    }
    try {
      await withRetry(
        this.retry,
        () =>
          this.connection.unary(
            contentAddressableStorageService.spliceBlob,
            {
              ...instanceRequestFields(digest.instanceName, digest.digestFunction),
              blobDigest: digest.toProto(),
              chunkDigests: chunkDigests.map((d) => d.toProto()),
              chunkingFunction: reapi.ChunkingFunction.Value.FAST_CDC_2020,
            },
            opts,
          ),
        opts.signal,
      );
    } catch (err) {
      // A chunk evicted since it was found present, or a server that stopped splicing.
      if (hasCode(err, Code.FAILED_PRECONDITION) || hasCode(err, Code.UNIMPLEMENTED)) return undefined;
      throw wrapStatus(err, `Failed to splice blob ${digest} from ${chunkDigests.length} chunks`);
    }
    return result;
  }

  /**
   * Downloads `digest` into `path` through the chunk cache. False when the server could not split
   * it (the caller then reads it plainly).
   */
  async download(digest: Digest, path: string, isExecutable: boolean, opts: RemoteCallOptions): Promise<boolean> {
    const cacheDir = this.chunkCacheDir;
    if (cacheDir === undefined) return false;
    let response: reapi.ISplitBlobResponse;
    try {
      response = await withRetry(
        this.retry,
        () =>
          this.connection.unary(
            contentAddressableStorageService.splitBlob,
            {
              ...instanceRequestFields(digest.instanceName, digest.digestFunction),
              blobDigest: digest.toProto(),
              chunkingFunction: reapi.ChunkingFunction.Value.FAST_CDC_2020,
            },
            opts,
          ),
        opts.signal,
      );
    } catch (err) {
      // Not served, or a blob the server will not split (too many chunks): read it whole.
      if (hasCode(err, Code.UNIMPLEMENTED) || hasCode(err, Code.INVALID_ARGUMENT) || hasCode(err, Code.RESOURCE_EXHAUSTED)) return false;
      throw wrapStatus(err, `Failed to split blob ${digest}`);
    }
    const fnValue = digestFunctionToProto(digest.digestFunction);
    const chunks = (response.chunkDigests ?? []).map((d, i) => Digest.fromProto(digest.instanceName, fnValue, d, `chunk_digests[${i}]`));
    const dir = join(cacheDir, digest.digestFunction);
    await mkdir(dir, { recursive: true });
    const fileOf = (d: Digest) => join(dir, `${d.hash}-${d.sizeBytes}`);

    // Fetch what the cache lacks, a window at a time.
    const absent: Digest[] = [];
    const seen = new Set<string>();
    for (const c of chunks) {
      if (seen.has(c.key)) continue;
      seen.add(c.key);
      if (!(await cachedChunk(fileOf(c), c))) absent.push(c);
    }
    for (let i = 0; i < absent.length; ) {
      const window: Digest[] = [];
      for (let bytes = 0; i < absent.length && (window.length === 0 || bytes + absent[i]!.sizeBytes <= CHUNK_WINDOW_BYTES); i++) {
        window.push(absent[i]!);
        bytes += absent[i]!.sizeBytes;
      }
      const got = await this.transport.downloadBlobs(window, opts);
      for (const c of window) await writeCacheFile(fileOf(c), got.get(c.key)!);
    }
    async function* assembled(): AsyncGenerator<Uint8Array> {
      for (const c of chunks) yield await readFile(fileOf(c));
    }
    // The whole blob is verified as it is written: a corrupt cached chunk fails the download.
    await writeStreamVerified(digest, assembled(), path, isExecutable);
    return true;
  }
}

/** True when the cache holds `digest` intact (a damaged file is removed). */
async function cachedChunk(file: string, digest: Digest): Promise<boolean> {
  let data: Uint8Array;
  try {
    data = await readFile(file);
  } catch {
    return false;
  }
  const got = Digest.ofBytes(data, { digestFunction: digest.digestFunction });
  if (got.hash === digest.hash && got.sizeBytes === digest.sizeBytes) return true;
  await rm(file, { force: true });
  return false;
}

async function writeCacheFile(file: string, data: Uint8Array): Promise<void> {
  const temp = `${file}.${randomUUID()}.tmp`;
  await writeFile(temp, data);
  await rename(temp, file);
}

/**
 * A blob store held in process memory, bounded by bytes and evicting the least-recently used blob
 * first. It exists for tests (a real store to compose decorators around, rather than mocks) and for
 * small single-process deployments; it is lost on restart.
 */
import type { Digest } from '../digest/digest.js';
import { StatusError } from '../errors/status-error.js';
import { absentDigests } from './absent-digests.js';
import { abortable, throwIfAborted } from '../util/abort.js';
import { type BlobStore, type CallOptions, type GetOptions, type ReadOptions } from './blob-store.js';
import { LruIndex, digestKeyScheme } from './lru-index.js';
import { resolveReadRange, sliceChunks } from './read-range.js';

export interface MemoryBlobStoreOptions {
  /** Total bytes kept; the least-recently used blobs are dropped beyond it. */
  maxSizeBytes: number;
}

export class MemoryBlobStore implements BlobStore {
  /** Blobs by digest, with recency for eviction. */
  private readonly blobs = new LruIndex<Uint8Array, Digest>(digestKeyScheme);
  private storedSizeBytes = 0;
  private readonly maxSizeBytes: number;

  constructor(opts: MemoryBlobStoreOptions) {
    if (!Number.isSafeInteger(opts.maxSizeBytes) || opts.maxSizeBytes <= 0) {
      throw StatusError.invalidArgument(`Failed to create memory blob store: maxSizeBytes ${JSON.stringify(opts.maxSizeBytes)} is not a positive integer`, [
        { field: 'maxSizeBytes', description: 'Must be a positive integer' },
      ]);
    }
    this.maxSizeBytes = opts.maxSizeBytes;
  }

  /** Bytes currently held, for tests and metrics. */
  get sizeBytes(): number {
    return this.storedSizeBytes;
  }

  /** Number of blobs currently held. */
  get blobCount(): number {
    return this.blobs.size;
  }

  async get(digest: Digest, opts: GetOptions = {}): Promise<Uint8Array> {
    throwIfAborted(opts.signal);
    const data = this.lookup(digest);
    if (opts.maxBytes !== undefined && data.length > opts.maxBytes) {
      throw StatusError.resourceExhausted(`Failed to get blob ${digest.toString()}: ${data.length} bytes exceed the limit of ${opts.maxBytes}`);
    }
    return data;
  }

  async *read(digest: Digest, opts: ReadOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    throwIfAborted(opts.signal);
    const data = this.lookup(digest);
    for (const chunk of sliceChunks(data, resolveReadRange(digest, data.length, opts))) {
      throwIfAborted(opts.signal);
      yield chunk;
    }
  }

  async put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions = {}): Promise<void> {
    throwIfAborted(opts.signal);
    // Copy, so that a caller reusing its buffer cannot change a stored blob.
    const bytes = data instanceof Uint8Array ? data.slice() : await this.collect(digest, data, opts.signal);
    throwIfAborted(opts.signal);
    if (digest.isEmpty && bytes.length === 0) return;
    if (bytes.length > this.maxSizeBytes) throw this.tooLarge(digest, bytes.length);
    const previous = this.blobs.set(digest, bytes);
    this.storedSizeBytes += bytes.length - (previous?.length ?? 0);
    this.evict();
  }

  /** The blob if it is held (marking it recently used), without the NOT_FOUND error of `get`. */
  getIfPresent(digest: Digest): Uint8Array | undefined {
    return this.blobs.touch(digest);
  }

  /** Drops a blob if it is held. */
  forget(digest: Digest): void {
    const data = this.blobs.delete(digest);
    if (data) this.storedSizeBytes -= data.length;
  }

  async findMissing(digests: readonly Digest[], opts: CallOptions = {}): Promise<Digest[]> {
    throwIfAborted(opts.signal);
    // A blob a client was told is present is about to be referenced: keep it warm.
    return absentDigests(digests, (d) => this.blobs.touch(d) !== undefined);
  }

  private lookup(digest: Digest): Uint8Array {
    const data = this.blobs.touch(digest);
    if (data) return data;
    if (digest.isEmpty) return new Uint8Array(0);
    throw StatusError.notFound(`Blob ${digest.toString()} not found`);
  }

  private async collect(digest: Digest, data: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of abortable(data, signal)) {
      total += chunk.length;
      if (total > this.maxSizeBytes) throw this.tooLarge(digest, total);
      chunks.push(chunk.slice());
    }
    return concat(chunks, total);
  }

  private tooLarge(digest: Digest, sizeBytes: number): StatusError {
    return StatusError.resourceExhausted(
      `Failed to store blob ${digest.toString()}: ${sizeBytes} bytes exceed the memory store's capacity of ${this.maxSizeBytes} bytes`,
    );
  }

  private evict(): void {
    for (const [digest, data] of this.blobs.oldestFirst()) {
      if (this.storedSizeBytes <= this.maxSizeBytes) break;
      this.blobs.delete(digest);
      this.storedSizeBytes -= data.length;
    }
  }
}

function concat(chunks: readonly Uint8Array[], totalBytes: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(totalBytes);
  let pos = 0;
  for (const chunk of chunks) {
    out.set(chunk, pos);
    pos += chunk.length;
  }
  return out;
}

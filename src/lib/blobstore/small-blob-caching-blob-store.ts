/**
 * Keeps recently written and read small blobs in memory in front of a local store. A warm Bazel
 * build is thousands of small reads (an ActionResult per action, then its outputs), and on a
 * filesystem store each is an open, a read and a close through libuv's thread pool: on a busy
 * machine those round trips, not the bytes, are what a cache hit costs. Served from memory they
 * cost nothing but the copy into the response.
 *
 * Only blobs of at most `maxBlobSizeBytes` are kept (by their actual length, so it also works for
 * the action cache, whose keys are action digests), in a MemoryBlobStore bounded by `maxSizeBytes`
 * with least-recently-used eviction. Writes go to `base` first, so an acknowledged write is never
 * only in memory; the blob is cached once `base` has it. Streamed writes are not cached (they are the
 * large ones). `findMissing` is answered by `base` alone: it owns what is stored.
 *
 * The base may evict a blob that is still cached here; reads then keep returning it, which is
 * harmless in a CAS (the bytes still match the digest). In the action cache, where a key can be
 * rewritten, every write replaces the cached entry.
 */
import type { Digest } from '../digest/digest.js';
import { throwIfAborted } from '../util/abort.js';
import { type BlobStore, type CallOptions, ForwardingBlobStore, type GetOptions, type ReadOptions } from './blob-store.js';
import { MemoryBlobStore } from './memory-blob-store.js';
import { resolveReadRange, sliceChunks } from './read-range.js';

export interface SmallBlobCachingBlobStoreOptions {
  /** Bytes of blobs kept in memory. */
  maxSizeBytes: number;
  /** Largest blob kept. @default 1 MiB */
  maxBlobSizeBytes?: number;
}

export class SmallBlobCachingBlobStore extends ForwardingBlobStore {
  private readonly cache: MemoryBlobStore;
  private readonly maxBlobSizeBytes: number;
  /**
   * Counts writes. A read fills the cache only if no write happened while it read the base: else an
   * action cache entry rewritten meanwhile could be replaced by the older bytes that read returned.
   */
  private writes = 0;

  constructor(base: BlobStore, opts: SmallBlobCachingBlobStoreOptions) {
    super(base);
    this.cache = new MemoryBlobStore({ maxSizeBytes: opts.maxSizeBytes });
    this.maxBlobSizeBytes = Math.min(opts.maxBlobSizeBytes ?? 1024 * 1024, opts.maxSizeBytes);
  }

  /** Blobs currently held in memory, for tests and metrics. */
  get cachedBlobCount(): number {
    return this.cache.blobCount;
  }

  override async get(digest: Digest, opts: GetOptions = {}): Promise<Uint8Array> {
    const cached = this.cache.getIfPresent(digest);
    if (cached && (opts.maxBytes === undefined || cached.length <= opts.maxBytes)) {
      throwIfAborted(opts.signal);
      return cached;
    }
    const writesBefore = this.writes;
    const data = await this.base.get(digest, opts);
    if (this.writes === writesBefore) await this.remember(digest, data);
    return data;
  }

  override async *read(digest: Digest, opts: ReadOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    // A CAS blob's digest states its size; anything larger than we keep streams from the base.
    if (digest.sizeBytes > this.maxBlobSizeBytes) {
      yield* this.base.read(digest, opts);
      return;
    }
    let data = this.cache.getIfPresent(digest);
    if (!data) {
      const writesBefore = this.writes;
      data = await this.base.get(digest, { signal: opts.signal, maxBytes: this.maxBlobSizeBytes });
      if (this.writes === writesBefore) await this.remember(digest, data);
    }
    for (const chunk of sliceChunks(data, resolveReadRange(digest, data.length, opts))) {
      throwIfAborted(opts.signal);
      yield chunk;
    }
  }

  override async put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<void> {
    this.writes++;
    let writesAfter: number;
    try {
      await this.base.put(digest, data, opts);
    } finally {
      writesAfter = ++this.writes;
      // Whatever was cached under this key may no longer be what the base holds (action cache).
      this.cache.forget(digest);
    }
    // Unless another write finished since, which may have stored newer bytes under the same key.
    if (data instanceof Uint8Array && this.writes === writesAfter) await this.remember(digest, data);
  }

  private async remember(digest: Digest, data: Uint8Array): Promise<void> {
    // The memory store copies, so a subarray of a large request never stays alive through it.
    if (data.length <= this.maxBlobSizeBytes) await this.cache.put(digest, data);
  }
}

/**
 * A two-level store where `slow` is the truth (a remote or large store) and `fast` a cache in front
 * of it (memory or local disk): reads are served from `fast` and, on NOT_FOUND there, from `slow`,
 * copying the blob into `fast` for next time. Writes go to `slow` first, so an acknowledged upload
 * is never only in the cache, then to `fast`. `findMissing` asks `slow`, since `fast` may have
 * evicted what `slow` still has.
 *
 * Use it on workers (fast = local disk, slow = the apiserver) so that inputs shared by many actions
 * are fetched once. A failure to fill `fast` is logged, not returned: the caller still gets correct
 * data from `slow`. Concurrent fills of one blob are coalesced into a single copy.
 */
import type { Digest } from '../digest/digest.js';
import { Code, hasCode } from '../errors/status-error.js';
import { type Logger, silentLogger } from '../util/logger.js';
import { raceAbort } from '../util/abort.js';
import type { BlobStore, CallOptions, GetOptions, ReadOptions } from './blob-store.js';

export interface ReadCachingBlobStoreOptions {
  logger?: Logger;
}

export class ReadCachingBlobStore implements BlobStore {
  /** Fills of `fast` in progress, by digest key, so that concurrent readers share one copy. */
  private readonly fills = new Map<string, Promise<boolean>>();
  private readonly logger: Logger;

  constructor(
    private readonly slow: BlobStore,
    private readonly fast: BlobStore,
    opts: ReadCachingBlobStoreOptions = {},
  ) {
    this.logger = opts.logger ?? silentLogger;
  }

  async get(digest: Digest, opts?: GetOptions): Promise<Uint8Array> {
    try {
      return await this.fast.get(digest, opts);
    } catch (err) {
      if (!hasCode(err, Code.NOT_FOUND)) throw err;
    }
    const data = await this.slow.get(digest, opts);
    try {
      await this.fast.put(digest, data, { signal: opts?.signal });
    } catch (err) {
      this.logger.warn('Failed to copy blob into the fast store', { digest: digest.toString(), err });
    }
    return data;
  }

  async *read(digest: Digest, opts: ReadOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    const fromFast = this.fast.read(digest, opts)[Symbol.asyncIterator]();
    let first: IteratorResult<Uint8Array>;
    try {
      first = await fromFast.next();
    } catch (err) {
      if (!hasCode(err, Code.NOT_FOUND)) throw err;
      // Copy the whole blob (streaming, bounded memory), then serve the requested range from the copy.
      if (await raceAbort(this.fill(digest), opts.signal)) yield* this.fast.read(digest, opts);
      else yield* this.slow.read(digest, opts);
      return;
    }
    try {
      if (!first.done) yield first.value;
      for (let step = await fromFast.next(); !step.done; step = await fromFast.next()) yield step.value;
    } finally {
      await fromFast.return?.();
    }
  }

  async put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<void> {
    await this.slow.put(digest, data, opts);
    // A stream can be consumed once: fill the cache from what `slow` now holds.
    if (data instanceof Uint8Array) {
      try {
        await this.fast.put(digest, data, opts);
      } catch (err) {
        this.logger.warn('Failed to write blob to the fast store', { digest: digest.toString(), err });
      }
    } else {
      try {
        await raceAbort(this.fill(digest), opts?.signal);
      } catch (err) {
        this.logger.warn('Failed to copy blob into the fast store', { digest: digest.toString(), err });
      }
    }
  }

  findMissing(digests: readonly Digest[], opts?: CallOptions): Promise<Digest[]> {
    return this.slow.findMissing(digests, opts);
  }

  /**
   * Copies a blob from `slow` to `fast`. Resolves true once `fast` has it, false if the copy failed
   * for a reason other than `slow` failing to serve it (which rejects, e.g. with NOT_FOUND). The copy
   * is shared by every concurrent reader, so it takes no caller's AbortSignal: once started it
   * completes, and each caller stops waiting on its own signal instead.
   */
  private fill(digest: Digest): Promise<boolean> {
    let pending = this.fills.get(digest.key);
    if (!pending) {
      pending = this.copy(digest).finally(() => this.fills.delete(digest.key));
      this.fills.set(digest.key, pending);
    }
    return pending;
  }

  private async copy(digest: Digest): Promise<boolean> {
    // Reading the first chunk from `slow` first lets NOT_FOUND surface as such, not as a failed fill.
    const source = this.slow.read(digest)[Symbol.asyncIterator]();
    const first = await source.next();
    const chunks = (async function* () {
      if (!first.done) yield first.value;
      for (let step = await source.next(); !step.done; step = await source.next()) yield step.value;
    })();
    try {
      await this.fast.put(digest, chunks);
      return true;
    } catch (err) {
      await source.return?.();
      this.logger.warn('Failed to copy blob into the fast store', { digest: digest.toString(), err });
      return false;
    }
  }
}

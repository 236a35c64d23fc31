/**
 * Remembers for a while which blobs were recently found present, so that `findMissing` only asks the
 * backend about the rest. Bazel calls FindMissingBlobs before every action with largely overlapping
 * sets (the same toolchain and source files again and again); in front of a remote or sharded
 * backend this removes most of that traffic. Worth it where a backend round trip is expensive; of
 * little use in front of a local in-memory index.
 *
 * The price is staleness: a blob evicted from the backend within `ttlMs` of being seen is still
 * reported present, so keep `ttlMs` well below the backend's typical blob lifetime.
 */
import type { Digest } from '../digest/digest.js';
import type { Clock } from '../util/clock.js';
import { StatusError } from '../errors/status-error.js';
import { type BlobStore, type CallOptions, ForwardingBlobStore } from './blob-store.js';

export interface ExistenceCachingBlobStoreOptions {
  /** How long a blob seen present is assumed to stay present. */
  ttlMs: number;
  /** Most digests remembered; the oldest are forgotten first. */
  maxEntries: number;
  clock: Clock;
}

export class ExistenceCachingBlobStore extends ForwardingBlobStore {
  /** Digest key -> time (ms) until which it is assumed present, in insertion order. */
  private readonly presentUntil = new Map<string, number>();

  constructor(
    base: BlobStore,
    private readonly opts: ExistenceCachingBlobStoreOptions,
  ) {
    super(base);
    if (!(opts.ttlMs >= 0) || !Number.isSafeInteger(opts.maxEntries) || opts.maxEntries <= 0) {
      throw StatusError.invalidArgument(
        `Failed to create existence caching blob store: ttlMs ${JSON.stringify(opts.ttlMs)} must be >= 0 and maxEntries ${JSON.stringify(opts.maxEntries)} a positive integer`,
      );
    }
  }

  override async put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<void> {
    await this.base.put(digest, data, opts);
    this.remember(digest.key, this.opts.clock.now());
  }

  override async findMissing(digests: readonly Digest[], opts?: CallOptions): Promise<Digest[]> {
    const now = this.opts.clock.now();
    const unknown = digests.filter((d) => {
      const until = this.presentUntil.get(d.key);
      if (until === undefined) return true;
      if (until > now) return false;
      this.presentUntil.delete(d.key);
      return true;
    });
    if (unknown.length === 0) return [];
    const missing = await this.base.findMissing(unknown, opts);
    const missingKeys = new Set(missing.map((d) => d.key));
    for (const d of unknown) if (!missingKeys.has(d.key)) this.remember(d.key, now);
    return missing;
  }

  private remember(key: string, now: number): void {
    this.presentUntil.delete(key);
    this.presentUntil.set(key, now + this.opts.ttlMs);
    for (const oldest of this.presentUntil.keys()) {
      if (this.presentUntil.size <= this.opts.maxEntries) break;
      this.presentUntil.delete(oldest);
    }
  }
}

/**
 * Storage is one small interface with composable layers, after Buildbarn's BlobAccess: terminal
 * stores (memory, filesystem, remote gRPC) and decorators that add one behaviour each (verification,
 * existence caching, read caching, ...). The CAS and the action cache use the same interface; only
 * the keys differ (an ActionResult is stored under its action's digest).
 *
 * Contract shared by every implementation (see test/helpers/blob-store-contract.ts):
 * - `get`/`read` of an absent blob fail with NOT_FOUND; the empty blob of any digest function is
 *   always present.
 * - `put` makes a blob visible only once all its bytes are stored; a failed or aborted put leaves
 *   nothing visible. Stores below a VerifyingBlobStore may trust the digest they are given.
 * - `findMissing` returns the absent subset of its argument, in argument order, and never throws
 *   NOT_FOUND.
 * - Memory use of `read` and of streaming `put` does not grow with blob size.
 * - An empty chunk in a streamed `put` says the producer is pausing (a parked resumable upload): a
 *   store that buffers may write out what it holds and release its buffers; the others ignore it.
 */
import type { Digest } from '../digest/digest.js';

export interface CallOptions {
  /** Aborts the call; implementations reject with an AbortError or CANCELLED StatusError. */
  signal?: AbortSignal;
}

export interface ReadOptions extends CallOptions {
  /** First byte to return. Past the end of the blob: OUT_OF_RANGE. */
  offset?: number;
  /** Most bytes to return; 0 or undefined means up to the end. */
  limit?: number;
}

export interface GetOptions extends CallOptions {
  /** Refuse (RESOURCE_EXHAUSTED) blobs larger than this, so callers bound their memory. */
  maxBytes?: number;
}

export interface BlobStore {
  /** Returns the whole blob. NOT_FOUND if absent. */
  get(digest: Digest, opts?: GetOptions): Promise<Uint8Array>;
  /** Streams the blob (or a range of it). Errors, NOT_FOUND included, surface from the iterator. */
  read(digest: Digest, opts?: ReadOptions): AsyncIterable<Uint8Array>;
  /** Stores a blob given whole or as a stream of chunks. */
  put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<void>;
  /** Returns the subset of `digests` that is absent, in argument order. */
  findMissing(digests: readonly Digest[], opts?: CallOptions): Promise<Digest[]>;
}

/**
 * Forwards every call to `base`. Decorators that change only some verbs extend it and override
 * those, the way Buildbarn's decorators embed the BlobAccess they wrap.
 */
export abstract class ForwardingBlobStore implements BlobStore {
  constructor(protected readonly base: BlobStore) {}

  get(digest: Digest, opts?: GetOptions): Promise<Uint8Array> {
    return this.base.get(digest, opts);
  }
  read(digest: Digest, opts?: ReadOptions): AsyncIterable<Uint8Array> {
    return this.base.read(digest, opts);
  }
  put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<void> {
    return this.base.put(digest, data, opts);
  }
  findMissing(digests: readonly Digest[], opts?: CallOptions): Promise<Digest[]> {
    return this.base.findMissing(digests, opts);
  }
}

/**
 * Largest chunk a store's `read` yields. Keeps memory per read bounded and leaves room under gRPC's
 * 4 MiB message limit, so ByteStream can forward chunks without re-slicing them.
 */
export const MAX_READ_CHUNK_BYTES = 1024 * 1024;

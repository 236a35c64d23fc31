/**
 * A BlobStore backed by a remote CAS over gRPC, so that a scheduler can forward storage to a
 * separate apiserver and workers can fetch inputs and store outputs through the same interface the
 * servers use for local storage. Reads and streaming writes go through ByteStream (memory bounded),
 * whole small blobs through the batch calls; NOT_FOUND and every other code arrive unchanged.
 * Each request names the instance its digests carry.
 */
import type { CasClient } from '../client/cas-client.js';
import type { Digest } from '../digest/digest.js';
import { StatusError } from '../errors/status-error.js';
import type { BlobStore, CallOptions, GetOptions, ReadOptions } from './blob-store.js';

export class GrpcBlobStore implements BlobStore {
  constructor(private readonly cas: CasClient) {}

  async get(digest: Digest, opts: GetOptions = {}): Promise<Uint8Array> {
    if (opts.maxBytes !== undefined && digest.sizeBytes > opts.maxBytes) {
      throw StatusError.resourceExhausted(`Failed to get blob ${digest}: it exceeds the ${opts.maxBytes}-byte limit of this read`);
    }
    return this.cas.readBlob(digest, { signal: opts.signal });
  }

  read(digest: Digest, opts: ReadOptions = {}): AsyncIterable<Uint8Array> {
    return this.cas.readStream(digest, { signal: opts.signal, offset: opts.offset, limit: opts.limit });
  }

  put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions = {}): Promise<void> {
    return this.cas.putBlob(digest, data, { signal: opts.signal });
  }

  findMissing(digests: readonly Digest[], opts: CallOptions = {}): Promise<Digest[]> {
    return this.cas.findMissingBlobs(digests, { signal: opts.signal });
  }
}

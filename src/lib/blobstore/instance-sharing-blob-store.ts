/**
 * One CAS pool for every instance name (`storage.cas_instance_scoping: shared`, the default).
 *
 * Why it exists: a blob is named by its content, so the same bytes uploaded under two instance
 * names are the same blob; storing them once per instance doubles disk for teams that build the
 * same sources under several instances (Buildbarn's CAS keys leave the instance out for this reason).
 * The stores below key blobs by instance name, so this decorator hands them every digest with the
 * empty instance name, and gives `findMissing` answers back under the names the caller asked with.
 * `per_instance` leaves it out: a blob uploaded under instance A is then missing under instance B.
 * The action cache stays per instance either way (a result is only as trusted as who wrote it).
 */
import type { Digest } from '../digest/digest.js';
import { type BlobStore, type CallOptions, ForwardingBlobStore, type GetOptions, type ReadOptions } from './blob-store.js';

export class InstanceSharingBlobStore extends ForwardingBlobStore {
  constructor(base: BlobStore) {
    super(base);
  }

  override get(digest: Digest, opts?: GetOptions): Promise<Uint8Array> {
    return this.base.get(shared(digest), opts);
  }

  override read(digest: Digest, opts?: ReadOptions): AsyncIterable<Uint8Array> {
    return this.base.read(shared(digest), opts);
  }

  override put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<void> {
    return this.base.put(shared(digest), data, opts);
  }

  override async findMissing(digests: readonly Digest[], opts?: CallOptions): Promise<Digest[]> {
    // The usual request (Bazel's default instance "") needs no renaming: no copy, no key string per digest.
    if (digests.every((d) => d.instanceName === '')) return this.base.findMissing(digests, opts);
    const missing = new Set((await this.base.findMissing(digests.map(shared), opts)).map((d) => d.key));
    return digests.filter((d) => missing.has(shared(d).key));
  }
}

function shared(digest: Digest): Digest {
  return digest.withInstanceName('');
}

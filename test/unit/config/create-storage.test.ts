import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CompletenessCheckingActionCache } from '../../../src/lib/actioncache/completeness-checking-action-cache.js';
import { GrpcActionCache } from '../../../src/lib/actioncache/grpc-action-cache.js';
import type { BlobStore } from '../../../src/lib/blobstore/blob-store.js';
import { GrpcBlobStore } from '../../../src/lib/blobstore/grpc-blob-store.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { SmallBlobCachingBlobStore } from '../../../src/lib/blobstore/small-blob-caching-blob-store.js';
import { VerifyingBlobStore } from '../../../src/lib/blobstore/verifying-blob-store.js';
import { InstanceSharingBlobStore } from '../../../src/lib/blobstore/instance-sharing-blob-store.js';
import { createStorage, needsLocalVerification, type Storage } from '../../../src/lib/config/create-storage.js';
import { localStorageConfig } from '../../../src/lib/config/defaults.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { bytes, expectCode, rejectionOf } from '../../helpers/blob-store-contract.js';

const base = (store: BlobStore) => (store as unknown as { base: BlobStore }).base;

describe('createStorage', () => {
  const open: Storage[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });

  it('verifies uploads to a local CAS exactly once, on top of the whole stack, under the shared-instance pool', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-storage-'));
    dirs.push(dir);
    const storage = await createStorage(localStorageConfig({ storageDir: dir }));
    open.push(storage);
    // storage.cas_instance_scoping defaults to shared: every digest reaches the stores under instance "".
    expect(storage.contentAddressableStorage).toBeInstanceOf(InstanceSharingBlobStore);
    expect(base(storage.contentAddressableStorage)).toBeInstanceOf(VerifyingBlobStore);
    expect(base(base(storage.contentAddressableStorage))).toBeInstanceOf(SmallBlobCachingBlobStore);
    expect(storage.actionCache).toBeInstanceOf(CompletenessCheckingActionCache);
    // A mismatched upload is refused before it reaches the disk.
    const err = await rejectionOf(storage.contentAddressableStorage.put(Digest.ofBytes(bytes('a')), bytes('b')));
    expectCode(err, Code.INVALID_ARGUMENT);
  });

  it('adds no second verifier when the tree has one', async () => {
    const storage = await createStorage({ cas: { verifying: { backend: { memory: { max_size_bytes: 1024 } } } }, cas_instance_scoping: 'per_instance' });
    open.push(storage);
    expect(storage.contentAddressableStorage).toBeInstanceOf(VerifyingBlobStore);
    expect(base(storage.contentAddressableStorage)).toBeInstanceOf(MemoryBlobStore);
    expect(storage.actionCache).toBeUndefined();
  });

  it('leaves verification of a forwarding CAS to the server it forwards to, and uses its action cache as is', async () => {
    const storage = await createStorage({ cas: { grpc: { address: '127.0.0.1:1' } }, action_cache: { grpc: { address: '127.0.0.1:1' } } });
    open.push(storage);
    expect(storage.contentAddressableStorage).toBeInstanceOf(GrpcBlobStore);
    expect(storage.actionCache).toBeInstanceOf(GrpcActionCache);
  });

  it('decides verification by what holds the blobs, through single-backend decorators', () => {
    expect(needsLocalVerification({ existence_caching: { ttl: '1s', max_entries: 1, backend: { grpc: { address: 'a:1' } } } })).toBe(false);
    expect(needsLocalVerification({ small_blob_caching: { max_size_bytes: 1, backend: { memory: { max_size_bytes: 1 } } } })).toBe(true);
    // read_caching writes to a local fast store too: that one must not take unverified bytes.
    expect(needsLocalVerification({ read_caching: { slow: { grpc: { address: 'a:1' } }, fast: { memory: { max_size_bytes: 1 } } } })).toBe(true);
  });

  it('refuses a verifying action cache, naming the key', async () => {
    const err = await rejectionOf(
      createStorage({ cas: { memory: { max_size_bytes: 1024 } }, action_cache: { verifying: { backend: { memory: { max_size_bytes: 1024 } } } } }),
    );
    expectCode(err, Code.INVALID_ARGUMENT);
    expect((err as Error).message).toContain('storage.action_cache.verifying');
  });
});

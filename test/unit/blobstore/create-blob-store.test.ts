import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../../src/lib/blobstore/blob-store.js';
import type { BlobStoreConfig } from '../../../src/lib/blobstore/config.js';
import { createBlobStore } from '../../../src/lib/blobstore/create-blob-store.js';
import { ExistenceCachingBlobStore } from '../../../src/lib/blobstore/existence-caching-blob-store.js';
import { FilesystemBlobStore } from '../../../src/lib/blobstore/filesystem-blob-store.js';
import { GrpcBlobStore } from '../../../src/lib/blobstore/grpc-blob-store.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { PackedBlobStore } from '../../../src/lib/blobstore/packed-blob-store.js';
import { ReadCachingBlobStore } from '../../../src/lib/blobstore/read-caching-blob-store.js';
import { SmallBlobCachingBlobStore } from '../../../src/lib/blobstore/small-blob-caching-blob-store.js';
import { VerifyingBlobStore } from '../../../src/lib/blobstore/verifying-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, type StatusError } from '../../../src/lib/errors/status-error.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { bytes, expectCode, rejectionOf } from '../../helpers/blob-store-contract.js';

describe('createBlobStore', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });

  it('builds nested decorators around their backends', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-create-'));
    dirs.push(dir);
    const config: BlobStoreConfig = {
      verifying: {
        backend: {
          existence_caching: {
            ttl: '1s',
            max_entries: 10,
            backend: { read_caching: { slow: { disk: { path: dir, max_size_bytes: '1MiB' } }, fast: { memory: { max_size_bytes: 1 << 20 } } } },
          },
        },
      },
    };
    const store = await createBlobStore(config, { clock: new FakeClock() });
    expect(store).toBeInstanceOf(VerifyingBlobStore);
    const inner = (store as unknown as { base: BlobStore }).base;
    expect(inner).toBeInstanceOf(ExistenceCachingBlobStore);
    const readCaching = (inner as unknown as { base: BlobStore }).base;
    expect(readCaching).toBeInstanceOf(ReadCachingBlobStore);
    expect((readCaching as unknown as { slow: BlobStore }).slow).toBeInstanceOf(FilesystemBlobStore);
    expect((readCaching as unknown as { fast: BlobStore }).fast).toBeInstanceOf(MemoryBlobStore);

    // And it works end to end: a verified upload lands on disk.
    const data = bytes('through the stack');
    await store.put(Digest.ofBytes(data), data);
    const hash = Digest.ofBytes(data).hash;
    await expect(fs.readFile(path.join(dir, '_', 'sha256', hash.slice(0, 2), `${hash}-${data.length}`), 'utf8')).resolves.toBe('through the stack');
  });

  it('builds grpc nodes as remote stores, and a small-blob cache around its backend', async () => {
    const closers: (() => unknown)[] = [];
    const store = await createBlobStore(
      { small_blob_caching: { max_size_bytes: '1MiB', backend: { grpc: { address: '127.0.0.1:1', instance_name: 'main' } } } },
      { onClose: (c) => closers.push(c) },
    );
    expect(store).toBeInstanceOf(SmallBlobCachingBlobStore);
    expect((store as unknown as { base: BlobStore }).base).toBeInstanceOf(GrpcBlobStore);
    // The connection is handed to the owner of the stack to release.
    expect(closers).toHaveLength(1);
    for (const c of closers) await c();
  });

  it('names the path of an invalid node', async () => {
    const cases: [unknown, string][] = [
      [{ verifying: { backend: { memory: { max_size_bytes: -1 } } } }, 'blob_store.verifying.backend.memory.max_size_bytes'],
      [{ read_caching: { slow: { memory: { max_size_bytes: 1 } } } }, 'blob_store.read_caching.fast'],
      [{ memory: { max_size_bytes: 1 }, disk: { path: '/x', max_size_bytes: 1 } }, 'blob_store'],
      [{ verifying: { backend: { s3: {} } } }, 'blob_store.verifying.backend'],
      [{ existence_caching: { backend: { memory: { max_size_bytes: 1 } }, ttl: 'soon', max_entries: 1 } }, 'blob_store.existence_caching.ttl'],
    ];
    for (const [config, field] of cases) {
      const err = (await rejectionOf(createBlobStore(config as BlobStoreConfig))) as StatusError;
      expectCode(err, Code.INVALID_ARGUMENT);
      expect(err.fieldViolations().map((v) => v.field)).toEqual([field]);
    }
  });

  it('builds a packed node over its backend for a CAS, and refuses it where reads cannot be checked or processes share it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-create-'));
    dirs.push(dir);
    const packed = { packed: { path: path.join(dir, 'packs'), max_size_bytes: '1MiB', max_blob_size_bytes: 10, backend: { memory: { max_size_bytes: '1MiB' } } } };
    const closers: (() => unknown)[] = [];
    const store = await createBlobStore(packed, { contentAddressed: true, onClose: (c) => closers.push(c) });
    expect(store).toBeInstanceOf(PackedBlobStore);
    const small = bytes('tiny');
    const large = bytes('more than ten bytes');
    await store.put(Digest.ofBytes(small), small);
    await store.put(Digest.ofBytes(large), large);
    expect((store as PackedBlobStore).blobCount).toBe(1);
    expect(closers).toHaveLength(1);
    for (const c of closers) await c();

    const notCas = (await rejectionOf(createBlobStore(packed))) as StatusError;
    expectCode(notCas, Code.INVALID_ARGUMENT);
    expect(notCas.fieldViolations().map((v) => v.field)).toEqual(['blob_store.packed']);
    const shared = (await rejectionOf(createBlobStore(packed, { contentAddressed: true, sharedDirectory: { processes: 2, rank: 0 } }))) as StatusError;
    expectCode(shared, Code.INVALID_ARGUMENT);
    expect(shared.message).toContain('--processes');
  });
});

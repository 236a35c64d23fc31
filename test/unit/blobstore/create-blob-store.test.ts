import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../../src/lib/blobstore/blob-store.js';
import type { BlobStoreConfig } from '../../../src/lib/blobstore/config.js';
import { createBlobStore } from '../../../src/lib/blobstore/create-blob-store.js';
import { ExistenceCachingBlobStore } from '../../../src/lib/blobstore/existence-caching-blob-store.js';
import { FilesystemBlobStore } from '../../../src/lib/blobstore/filesystem-blob-store.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { ReadCachingBlobStore } from '../../../src/lib/blobstore/read-caching-blob-store.js';
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
          existenceCaching: {
            ttlMs: 1000,
            maxEntries: 10,
            backend: { readCaching: { slow: { filesystem: { path: dir, maxSizeBytes: 1 << 20 } }, fast: { memory: { maxSizeBytes: 1 << 20 } } } },
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

  it('builds grpc nodes with the injected factory', async () => {
    const remote = new MemoryBlobStore({ maxSizeBytes: 100 });
    const seen: unknown[] = [];
    const store = await createBlobStore(
      { verifying: { backend: { grpc: { address: '127.0.0.1:1234', instanceName: 'main' } } } },
      { createGrpcBlobStore: (cfg) => (seen.push(cfg), remote) },
    );
    expect(seen).toEqual([{ address: '127.0.0.1:1234', instanceName: 'main' }]);
    expect((store as unknown as { base: BlobStore }).base).toBe(remote);
  });

  it('explains that grpc nodes need a factory when none is given', async () => {
    const err = (await rejectionOf(createBlobStore({ grpc: { address: 'cas:8980' } }))) as StatusError;
    expectCode(err, Code.FAILED_PRECONDITION);
    expect(err.message).toContain('blobStore.grpc');
  });

  it('names the path of an invalid node', async () => {
    const cases: [unknown, string][] = [
      [{ verifying: { backend: { memory: { maxSizeBytes: -1 } } } }, 'blobStore.verifying.backend.memory.maxSizeBytes'],
      [{ readCaching: { slow: { memory: { maxSizeBytes: 1 } } } }, 'blobStore.readCaching.fast'],
      [{ memory: { maxSizeBytes: 1 }, filesystem: { path: '/x', maxSizeBytes: 1 } }, 'blobStore'],
      [{ verifying: { backend: { s3: {} } } }, 'blobStore.verifying.backend'],
      [{ existenceCaching: { backend: { memory: { maxSizeBytes: 1 } }, ttlMs: 'soon', maxEntries: 1 } }, 'blobStore.existenceCaching.ttlMs'],
    ];
    for (const [config, field] of cases) {
      const err = (await rejectionOf(createBlobStore(config as BlobStoreConfig))) as StatusError;
      expectCode(err, Code.INVALID_ARGUMENT);
      expect(err.fieldViolations().map((v) => v.field)).toEqual([field]);
    }
  });
});

import { describe, expect, it } from 'vitest';
import { BlobStoreActionCache } from '../../../src/lib/actioncache/action-cache.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, type StatusError } from '../../../src/lib/errors/status-error.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { bytes, expectCode, rejectionOf } from '../../helpers/blob-store-contract.js';

describe('BlobStoreActionCache', () => {
  const actionDigest = Digest.ofBytes(bytes('an encoded Action'));

  it('returns the result stored for an action', async () => {
    const cache = new BlobStoreActionCache(new MemoryBlobStore({ maxSizeBytes: 1024 }));
    const result: reapi.IActionResult = {
      exitCode: 3,
      outputFiles: [{ path: 'out/a.txt', digest: Digest.ofBytes(bytes('a')).toProto(), isExecutable: true }],
      stdoutDigest: Digest.ofBytes(bytes('log')).toProto(),
    };
    await cache.updateActionResult(actionDigest, result);
    const got = await cache.getActionResult(actionDigest);
    expect(got.exitCode).toBe(3);
    expect(got.outputFiles?.[0]).toMatchObject({ path: 'out/a.txt', isExecutable: true, digest: { hash: Digest.ofBytes(bytes('a')).hash, sizeBytes: 1 } });
    expect(got.stdoutDigest).toMatchObject({ hash: Digest.ofBytes(bytes('log')).hash, sizeBytes: 3 });
  });

  it('stores an all-default result (zero bytes) and still finds it', async () => {
    const cache = new BlobStoreActionCache(new MemoryBlobStore({ maxSizeBytes: 1024 }));
    await cache.updateActionResult(actionDigest, {});
    expect((await cache.getActionResult(actionDigest)).exitCode).toBe(0);
  });

  it('misses with NOT_FOUND naming the action', async () => {
    const cache = new BlobStoreActionCache(new MemoryBlobStore({ maxSizeBytes: 1024 }));
    const err = (await rejectionOf(cache.getActionResult(actionDigest))) as StatusError;
    expectCode(err, Code.NOT_FOUND);
    expect(err.message).toContain(actionDigest.toString());
  });

  it('keeps results of different instance names apart', async () => {
    const cache = new BlobStoreActionCache(new MemoryBlobStore({ maxSizeBytes: 1024 }));
    await cache.updateActionResult(actionDigest.withInstanceName('a'), { exitCode: 1 });
    expectCode(await rejectionOf(cache.getActionResult(actionDigest.withInstanceName('b'))), Code.NOT_FOUND);
  });

  it('reports an undecodable entry as INTERNAL', async () => {
    const store = new MemoryBlobStore({ maxSizeBytes: 1024 });
    await store.put(actionDigest, new Uint8Array([0xff, 0xff, 0xff]));
    const err = (await rejectionOf(new BlobStoreActionCache(store).getActionResult(actionDigest))) as StatusError;
    expectCode(err, Code.INTERNAL);
    expect(err.message).toMatch(/^Failed to decode action result/);
  });
});

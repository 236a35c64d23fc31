import { describe, expect, it } from 'vitest';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { VerifyingBlobStore } from '../../../src/lib/blobstore/verifying-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, type StatusError } from '../../../src/lib/errors/status-error.js';
import { bytes, chunksOf, describeBlobStoreContract, expectCode, rejectionOf } from '../../helpers/blob-store-contract.js';

describeBlobStoreContract('VerifyingBlobStore over MemoryBlobStore', async () => ({
  store: new VerifyingBlobStore(new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 })),
}));

describe('VerifyingBlobStore', () => {
  const setup = () => {
    const base = new MemoryBlobStore({ maxSizeBytes: 1024 });
    return { base, store: new VerifyingBlobStore(base) };
  };
  const data = bytes('the real content');
  const real = Digest.ofBytes(data);
  const otherHash = Digest.ofBytes(bytes('something else entirely')).hash;

  it('rejects content whose hash differs from the declared digest, storing nothing', async () => {
    const { base, store } = setup();
    const declared = Digest.create('', 'sha256', otherHash, data.length);
    for (const source of [data, chunksOf(data.subarray(0, 5), data.subarray(5))]) {
      const err = (await rejectionOf(store.put(declared, source))) as StatusError;
      expectCode(err, Code.INVALID_ARGUMENT);
      expect(err.message).toBe(`Failed to store blob: client declared ${otherHash}/${data.length}, server computed ${real.hash}/${data.length}`);
      expect(err.fieldViolations()).toEqual([expect.objectContaining({ field: 'digest.hash' })]);
    }
    expect(base.blobCount).toBe(0);
  });

  it('rejects content shorter than declared, storing nothing', async () => {
    const { base, store } = setup();
    const declared = Digest.create('', 'sha256', real.hash, data.length + 1);
    const err = (await rejectionOf(store.put(declared, chunksOf(data)))) as StatusError;
    expectCode(err, Code.INVALID_ARGUMENT);
    expect(err.message).toBe(`Failed to store blob: client declared ${real.hash}/${data.length + 1}, server computed ${real.hash}/${data.length}`);
    expect(err.fieldViolations()).toEqual([expect.objectContaining({ field: 'digest.size_bytes' })]);
    expect(base.blobCount).toBe(0);
  });

  it('rejects a stream as soon as it exceeds the declared size', async () => {
    const { base, store } = setup();
    const declared = Digest.create('', 'sha256', real.hash, 4);
    let pulled = 0;
    const source = (async function* () {
      for (let i = 0; i < 100; i++) {
        pulled++;
        yield bytes('abc');
      }
    })();
    const err = (await rejectionOf(store.put(declared, source))) as StatusError;
    expectCode(err, Code.INVALID_ARGUMENT);
    expect(err.message).toContain('server received at least 6 bytes');
    expect(pulled).toBe(2);
    expect(base.blobCount).toBe(0);
  });

  it('stores content that matches its digest', async () => {
    const { base, store } = setup();
    await store.put(real, chunksOf(data.subarray(0, 3), data.subarray(3)));
    expect(await base.findMissing([real])).toEqual([]);
  });
});

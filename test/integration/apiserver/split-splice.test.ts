/**
 * SplitBlob and SpliceBlob against a real apiserver (disk CAS, verified uploads), through plain
 * grpc-js clients: the round trip and every refusal the REAPI names.
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { type Harness, expectStatus, reapi, startHarness, unary } from './harness.js';

function randomBytes(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, block = 0; i < n; block++, i += 32) createHash('sha256').update(`${seed}/${block}`).digest().copy(out, i, 0, Math.min(32, n - i));
  return out;
}

async function putBlobs(h: Harness, blobs: Uint8Array[], instanceName = ''): Promise<Digest[]> {
  const digests = blobs.map((b) => Digest.ofBytes(b, { instanceName }));
  const res = await unary<reapi.BatchUpdateBlobsResponse>(h.cas, 'batchUpdateBlobs', {
    instanceName,
    requests: blobs.map((data, i) => ({ digest: digests[i]!.toProto(), data })),
  });
  expect(res.responses.map((r) => r.status?.code ?? 0)).toEqual(blobs.map(() => 0));
  return digests;
}

async function readBlobs(h: Harness, digests: reapi.IDigest[], instanceName = ''): Promise<Buffer[]> {
  const res = await unary<reapi.BatchReadBlobsResponse>(h.cas, 'batchReadBlobs', { instanceName, digests });
  expect(res.responses.map((r) => r.status?.code ?? 0)).toEqual(digests.map(() => 0));
  return res.responses.map((r) => Buffer.from(r.data));
}

describe('apiserver SplitBlob and SpliceBlob', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });
  const start = () => startHarness({ capabilities: { chunking: { avgChunkSizeBytes: 4096 } } });

  it('splits a stored blob into stored chunks, and splices them back into a blob that reads as the original', async () => {
    h = await start();
    const data = randomBytes(150_000, 'round trip');
    const [blob] = await putBlobs(h, [data], 'main');
    const split = await unary<reapi.SplitBlobResponse>(h.cas, 'splitBlob', { instanceName: 'main', blobDigest: blob!.toProto() });
    expect(split.chunkingFunction).toBe(reapi.ChunkingFunction.Value.FAST_CDC_2020);
    expect(split.chunkDigests.length).toBeGreaterThan(10);
    const chunks = await readBlobs(h, split.chunkDigests, 'main');
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    for (const c of chunks.slice(0, -1)) expect(c.length).toBeGreaterThanOrEqual(1024);

    // The same blob with a changed byte: only the chunk around it is new; splice assembles it.
    const changed = Buffer.from(data);
    changed[75_000] = changed[75_000]! ^ 1;
    const changedDigest = Digest.ofBytes(changed, { instanceName: 'main' });
    const missing = await unary<reapi.FindMissingBlobsResponse>(h.cas, 'findMissingBlobs', { instanceName: 'main', blobDigests: [changedDigest.toProto()] });
    expect(missing.missingBlobDigests).toHaveLength(1);
    // Re-cut locally as a client would (same parameters): reuse all chunks but the changed ones.
    const { chunkBytes } = await import('../../../src/lib/cas/fastcdc.js');
    const pieces = chunkBytes(changed, { avgChunkSizeBytes: 4096 });
    const pieceDigests = pieces.map((p) => Digest.ofBytes(p, { instanceName: 'main' }));
    const absent = await unary<reapi.FindMissingBlobsResponse>(h.cas, 'findMissingBlobs', { instanceName: 'main', blobDigests: pieceDigests.map((d) => d.toProto()) });
    expect(absent.missingBlobDigests.length).toBeLessThanOrEqual(2);
    const absentKeys = new Set(absent.missingBlobDigests.map((d) => d.hash));
    await putBlobs(h, pieces.filter((_, i) => absentKeys.has(pieceDigests[i]!.hash)), 'main');
    const spliced = await unary<reapi.SpliceBlobResponse>(h.cas, 'spliceBlob', {
      instanceName: 'main',
      blobDigest: changedDigest.toProto(),
      chunkDigests: pieceDigests.map((d) => d.toProto()),
      chunkingFunction: reapi.ChunkingFunction.Value.FAST_CDC_2020,
    });
    expect(spliced.blobDigest?.hash).toBe(changedDigest.hash);
    const [back] = await readBlobs(h, [changedDigest.toProto()], 'main');
    expect(back!.equals(changed)).toBe(true);
  });

  it('splice with a missing chunk: FAILED_PRECONDITION with a MISSING violation for it', async () => {
    h = await start();
    const a = randomBytes(3000, 'a');
    const b = randomBytes(3000, 'b');
    const [da] = await putBlobs(h, [a]);
    const db = Digest.ofBytes(b);
    const whole = Digest.ofBytes(Buffer.concat([a, b]));
    const err = await expectStatus(unary(h.cas, 'spliceBlob', { blobDigest: whole.toProto(), chunkDigests: [da!.toProto(), db.toProto()] }), Code.FAILED_PRECONDITION);
    expect(err.preconditionViolations()).toEqual([expect.objectContaining({ type: 'MISSING', subject: `blobs/${db.hash}/${db.sizeBytes}` })]);
    const missing = await unary<reapi.FindMissingBlobsResponse>(h.cas, 'findMissingBlobs', { blobDigests: [whole.toProto()] });
    expect(missing.missingBlobDigests).toHaveLength(1);
  });

  it('splice of chunks that do not make the blob: INVALID_ARGUMENT, nothing stored', async () => {
    h = await start();
    const [da, db] = await putBlobs(h, [randomBytes(2000, 'x'), randomBytes(2000, 'y')]);
    const claimed = Digest.ofBytes(randomBytes(4000, 'z'));
    await expectStatus(unary(h.cas, 'spliceBlob', { blobDigest: claimed.toProto(), chunkDigests: [da!.toProto(), db!.toProto()] }), Code.INVALID_ARGUMENT);
    const wrongSize = Digest.ofBytes(randomBytes(4001, 'z'));
    const err = await expectStatus(unary(h.cas, 'spliceBlob', { blobDigest: wrongSize.toProto(), chunkDigests: [da!.toProto(), db!.toProto()] }), Code.INVALID_ARGUMENT);
    expect(err.fieldViolations().map((v) => v.field)).toEqual(['chunk_digests']);
    const missing = await unary<reapi.FindMissingBlobsResponse>(h.cas, 'findMissingBlobs', { blobDigests: [claimed.toProto(), wrongSize.toProto()] });
    expect(missing.missingBlobDigests).toHaveLength(2);
  });

  it('split of an absent blob is NOT_FOUND; an unsupported chunking function or a malformed digest is INVALID_ARGUMENT', async () => {
    h = await start();
    await expectStatus(unary(h.cas, 'splitBlob', { blobDigest: Digest.ofBytes(Buffer.from('never stored')).toProto() }), Code.NOT_FOUND);
    const [d] = await putBlobs(h, [randomBytes(5000, 'fn')]);
    const err = await expectStatus(
      unary(h.cas, 'splitBlob', { blobDigest: d!.toProto(), chunkingFunction: reapi.ChunkingFunction.Value.REP_MAX_CDC }),
      Code.INVALID_ARGUMENT,
    );
    expect(err.fieldViolations().map((v) => v.field)).toEqual(['chunking_function']);
    await expectStatus(unary(h.cas, 'spliceBlob', { blobDigest: d!.toProto(), chunkDigests: [{ hash: 'zz', sizeBytes: 5000 }] }), Code.INVALID_ARGUMENT);
  });

  it('splits and splices BLAKE3 blobs into BLAKE3 chunks', async () => {
    h = await start();
    const data = randomBytes(40_000, 'blake3');
    const blob = Digest.ofBytes(data, { digestFunction: 'blake3' });
    const blake3 = reapi.DigestFunction.Value.BLAKE3;
    await unary(h.cas, 'batchUpdateBlobs', { digestFunction: blake3, requests: [{ digest: blob.toProto(), data }] });
    const split = await unary<reapi.SplitBlobResponse>(h.cas, 'splitBlob', { digestFunction: blake3, blobDigest: blob.toProto() });
    const chunks = await unary<reapi.BatchReadBlobsResponse>(h.cas, 'batchReadBlobs', { digestFunction: blake3, digests: split.chunkDigests });
    expect(Buffer.concat(chunks.responses.map((r) => r.data)).equals(data)).toBe(true);
  });
});

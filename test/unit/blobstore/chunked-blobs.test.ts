import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ForwardingBlobStore } from '../../../src/lib/blobstore/blob-store.js';
import { ChunkedBlobs } from '../../../src/lib/blobstore/chunked-blobs.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { VerifyingBlobStore } from '../../../src/lib/blobstore/verifying-blob-store.js';
import { chunkBytes } from '../../../src/lib/cas/fastcdc.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { rpc } from '../../../src/lib/proto/index.js';

function randomBytes(n: number, seed: string): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0, block = 0; i < n; block++, i += 32) out.set(createHash('sha256').update(`${seed}/${block}`).digest().subarray(0, Math.min(32, n - i)), i);
  return out;
}

const params = { avgChunkSizeBytes: 4096 };

function setup() {
  const memory = new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 });
  const cas = new VerifyingBlobStore(memory);
  return { memory, cas, chunked: new ChunkedBlobs(cas, params) };
}

async function caught(p: Promise<unknown>): Promise<StatusError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(StatusError);
    return err as StatusError;
  }
  throw new Error('expected a failure');
}

describe('ChunkedBlobs', () => {
  it('split stores the chunks of a stored blob and answers their digests in order', async () => {
    const { cas, chunked } = setup();
    const data = randomBytes(200_000, 'split');
    const blob = Digest.ofBytes(data);
    await cas.put(blob, data);
    const chunks = await chunked.split(blob);
    const expected = chunkBytes(data, params).map((c) => Digest.ofBytes(c));
    expect(chunks.map(String)).toEqual(expected.map(String));
    expect(await cas.findMissing(chunks)).toEqual([]);
    const back = Buffer.concat(await Promise.all(chunks.map((c) => cas.get(c))));
    expect(back.equals(Buffer.from(data))).toBe(true);
  });

  it('split of an absent blob is NOT_FOUND; of the empty blob, no chunks', async () => {
    const { chunked } = setup();
    const err = await caught(chunked.split(Digest.ofBytes(Buffer.from('absent'))));
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(await chunked.split(Digest.empty())).toEqual([]);
  });

  it('split of a blob whose chunk list would not fit in a message is RESOURCE_EXHAUSTED', async () => {
    const { chunked } = setup();
    // Never read: refused on its size alone (over 20k chunks of 4 KiB).
    const huge = Digest.create('', 'sha256', 'a'.repeat(64), 20_001 * 4096);
    const err = await caught(chunked.split(huge));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
  });

  it('split keeps the digest function and instance of the blob', async () => {
    const { cas, chunked } = setup();
    const data = randomBytes(50_000, 'blake3');
    const blob = Digest.ofBytes(data, { digestFunction: 'blake3', instanceName: 'main' });
    await cas.put(blob, data);
    const chunks = await chunked.split(blob);
    expect(chunks.every((c) => c.digestFunction === 'blake3' && c.instanceName === 'main')).toBe(true);
    expect(await cas.findMissing(chunks)).toEqual([]);
  });

  it('splice stores a blob made of present chunks, and split then answers the same chunks', async () => {
    const { cas, chunked } = setup();
    const data = randomBytes(100_000, 'splice');
    const pieces = chunkBytes(data, params);
    const chunks = pieces.map((p) => Digest.ofBytes(p));
    for (let i = 0; i < pieces.length; i++) await cas.put(chunks[i]!, pieces[i]!);
    const blob = Digest.ofBytes(data);
    await chunked.splice(blob, chunks);
    expect(Buffer.from(await cas.get(blob)).equals(Buffer.from(data))).toBe(true);
    expect((await chunked.split(blob)).map(String)).toEqual(chunks.map(String));
  });

  it('splice with a missing chunk is FAILED_PRECONDITION naming it in a PreconditionFailure, and stores nothing', async () => {
    const { cas, chunked } = setup();
    const a = Buffer.from('first chunk ');
    const b = Buffer.from('second chunk, never uploaded');
    const da = Digest.ofBytes(a);
    const db = Digest.ofBytes(b);
    await cas.put(da, a);
    const blob = Digest.ofBytes(Buffer.concat([a, b]));
    const err = await caught(chunked.splice(blob, [da, db]));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    const detail = err.details.find((d) => d.typeUrl.endsWith('google.rpc.PreconditionFailure'))!;
    const violations = rpc.PreconditionFailure.decode(detail.value).violations;
    expect(violations).toEqual([expect.objectContaining({ type: 'MISSING', subject: `blobs/${db.hash}/${db.sizeBytes}` })]);
    expect(await cas.findMissing([blob])).toHaveLength(1);
  });

  it('splice of chunks that concatenate to other bytes is INVALID_ARGUMENT and stores nothing', async () => {
    const { cas, chunked } = setup();
    const a = Buffer.from('aaaa');
    const b = Buffer.from('bbbb');
    await cas.put(Digest.ofBytes(a), a);
    await cas.put(Digest.ofBytes(b), b);
    const claimed = Digest.ofBytes(Buffer.from('aaaacccc'));
    const err = await caught(chunked.splice(claimed, [Digest.ofBytes(a), Digest.ofBytes(b)]));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(await cas.findMissing([claimed])).toHaveLength(1);
  });

  it('splice whose chunk sizes do not add up to the blob size is INVALID_ARGUMENT', async () => {
    const { cas, chunked } = setup();
    const a = Buffer.from('aaaa');
    await cas.put(Digest.ofBytes(a), a);
    const err = await caught(chunked.splice(Digest.ofBytes(Buffer.from('aaaaa')), [Digest.ofBytes(a)]));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain('add up to 4 bytes');
  });

  it('split after a remembered chunk was evicted cuts and stores it anew', async () => {
    const memory = new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 });
    const evicted = new Set<string>();
    // A store that forgets chosen blobs, as an LRU eviction would.
    class Forgetting extends ForwardingBlobStore {
      override async findMissing(digests: readonly Digest[]): Promise<Digest[]> {
        const missing = new Set((await this.base.findMissing(digests)).map((d) => d.key));
        return digests.filter((d) => missing.has(d.key) || evicted.has(d.key));
      }
      override async put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
        evicted.delete(digest.key);
        return this.base.put(digest, data);
      }
    }
    const cas = new VerifyingBlobStore(new Forgetting(memory));
    const chunked = new ChunkedBlobs(cas, params);
    const data = randomBytes(60_000, 'evict');
    const blob = Digest.ofBytes(data);
    await cas.put(blob, data);
    const first = await chunked.split(blob);
    expect(first.length).toBeGreaterThan(2);
    evicted.add(first[1]!.key);
    expect(await cas.findMissing(first)).toHaveLength(1);
    expect((await chunked.split(blob)).map(String)).toEqual(first.map(String));
    expect(await cas.findMissing(first)).toEqual([]);
  });
});

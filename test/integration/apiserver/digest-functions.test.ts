/**
 * Every digest function end to end against a real apiserver on disk: requests name their function
 * in `digest_function` (or in the resource name), blobs of each function land in that function's
 * own directory, and the same bytes or the same action under two functions are separate entries.
 */
import { randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { DIGEST_FUNCTIONS, type DigestFunction, digestFunctionToProto } from '../../../src/lib/digest/digest-function.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import type { bytestream } from '../../../src/lib/proto/index.js';
import { type Harness, concat, expectStatus, readStream, reapi, startHarness, unary, writeBlob } from './harness.js';

const text = (s: string) => new TextEncoder().encode(s);

describe('apiserver digest functions', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  const missing = async (fn: DigestFunction, digests: Digest[]) =>
    (await unary<reapi.FindMissingBlobsResponse>(h!.cas, 'findMissingBlobs', { digestFunction: digestFunctionToProto(fn), blobDigests: digests.map((d) => d.toProto()) }))
      .missingBlobDigests.map((d) => d.hash);

  it.each(DIGEST_FUNCTIONS)('stores, finds and reads %s blobs by batch and by ByteStream', async (fn) => {
    h = await startHarness();
    const value = digestFunctionToProto(fn);
    const small = text(`small blob hashed with ${fn}`);
    const large = new Uint8Array(200_000).map((_, i) => (i * 13) % 256);
    const smallDigest = Digest.ofBytes(small, { digestFunction: fn });
    const largeDigest = Digest.ofBytes(large, { digestFunction: fn });
    expect(await missing(fn, [smallDigest, largeDigest])).toEqual([smallDigest.hash, largeDigest.hash]);

    const up = await unary<reapi.BatchUpdateBlobsResponse>(h.cas, 'batchUpdateBlobs', { digestFunction: value, requests: [{ digest: smallDigest.toProto(), data: small }] });
    expect(up.responses[0]!.status?.code ?? 0).toBe(Code.OK);
    // The resource name carries the function (blobs/<fn>/... for all but SHA-256).
    const name = largeDigest.toByteStreamWritePath(randomUUID());
    if (fn !== 'sha256') expect(name).toContain(`/blobs/${fn}/`);
    await writeBlob(h.byteStream, name, large);
    expect(await missing(fn, [smallDigest, largeDigest])).toEqual([]);

    const read = await unary<reapi.BatchReadBlobsResponse>(h.cas, 'batchReadBlobs', { digestFunction: value, digests: [smallDigest.toProto()] });
    expect(Buffer.from(read.responses[0]!.data).equals(Buffer.from(small))).toBe(true);
    const streamed = await readStream<bytestream.ReadResponse>(h.byteStream, 'read', { resourceName: largeDigest.toByteStreamReadPath() });
    expect(Buffer.from(concat(streamed.map((m) => m.data))).equals(Buffer.from(large))).toBe(true);

    // A wrong upload is refused under this function's hash too.
    const wrong = await unary<reapi.BatchUpdateBlobsResponse>(h.cas, 'batchUpdateBlobs', {
      digestFunction: value,
      requests: [{ digest: Digest.ofBytes(text('other'), { digestFunction: fn }).toProto(), data: text('OTHER') }],
    });
    expect(wrong.responses[0]!.status?.code).toBe(Code.INVALID_ARGUMENT);
    // And a hash of the wrong length for the function is INVALID_ARGUMENT.
    await expectStatus(unary(h.cas, 'findMissingBlobs', { digestFunction: value, blobDigests: [{ hash: 'ab'.repeat(10), sizeBytes: 1 }] }), Code.INVALID_ARGUMENT);
  });

  it('keeps the same bytes under SHA-256 and BLAKE3 (both 64 hex digits) as separate entries on disk', async () => {
    h = await startHarness();
    const data = text('the same bytes, two functions');
    const sha = Digest.ofBytes(data, { digestFunction: 'sha256' });
    const b3 = Digest.ofBytes(data, { digestFunction: 'blake3' });
    expect(sha.hash).not.toBe(b3.hash);
    await unary(h.cas, 'batchUpdateBlobs', { requests: [{ digest: sha.toProto(), data }] });
    // Stored under SHA-256 only: BLAKE3 still misses it.
    expect(await missing('blake3', [b3])).toEqual([b3.hash]);
    // A SHA-256 hash asked about as BLAKE3 is a different blob (and absent).
    expect(await missing('blake3', [Digest.create('', 'blake3', sha.hash, sha.sizeBytes)])).toEqual([sha.hash]);
    await unary(h.cas, 'batchUpdateBlobs', { digestFunction: reapi.DigestFunction.Value.BLAKE3, requests: [{ digest: b3.toProto(), data }] });
    expect(await missing('blake3', [b3])).toEqual([]);
    expect(await missing('sha256', [sha])).toEqual([]);

    // Each function has its own directory under the instance's, each holding its own file.
    const casRoots = await findDirsNamed(h.storageDir, new Set(['sha256', 'blake3']));
    const filesByFn = new Map<string, string[]>();
    for (const dir of casRoots) filesByFn.set(dir.split('/').pop()!, [...(filesByFn.get(dir.split('/').pop()!) ?? []), ...(await listFiles(dir))]);
    expect(filesByFn.get('sha256')!.some((f) => f.startsWith(sha.hash))).toBe(true);
    expect(filesByFn.get('blake3')!.some((f) => f.startsWith(b3.hash))).toBe(true);
    expect(filesByFn.get('blake3')!.some((f) => f.startsWith(sha.hash))).toBe(false);
  });

  it('keys the action cache by digest function', async () => {
    h = await startHarness({ capabilities: { actionCacheUpdateEnabled: true } });
    const action = { commandDigest: Digest.ofBytes(text('cmd')).toProto(), doNotCache: false };
    const shaAction = encodeWithDigest(reapi.Action, action, { digestFunction: 'sha256' }).digest;
    // The same hash under BLAKE3 names another action.
    const sameHashB3 = Digest.create('', 'blake3', shaAction.hash, shaAction.sizeBytes);
    const result = { exitCode: 7 };
    await unary(h.actionCache, 'updateActionResult', { actionDigest: shaAction.toProto(), actionResult: result });
    const got = await unary<reapi.ActionResult>(h.actionCache, 'getActionResult', { actionDigest: shaAction.toProto() });
    expect(got.exitCode).toBe(7);
    await expectStatus(
      unary(h.actionCache, 'getActionResult', { digestFunction: reapi.DigestFunction.Value.BLAKE3, actionDigest: sameHashB3.toProto() }),
      Code.NOT_FOUND,
    );
    await unary(h.actionCache, 'updateActionResult', { digestFunction: reapi.DigestFunction.Value.BLAKE3, actionDigest: sameHashB3.toProto(), actionResult: { exitCode: 9 } });
    const b3 = await unary<reapi.ActionResult>(h.actionCache, 'getActionResult', { digestFunction: reapi.DigestFunction.Value.BLAKE3, actionDigest: sameHashB3.toProto() });
    const sha = await unary<reapi.ActionResult>(h.actionCache, 'getActionResult', { actionDigest: shaAction.toProto() });
    expect([b3.exitCode, sha.exitCode]).toEqual([9, 7]);
  });

  it('refuses functions left out of its configuration', async () => {
    h = await startHarness({ capabilities: { digestFunctions: ['sha256', 'blake3'] } });
    const caps = await unary<reapi.ServerCapabilities>(h.capabilities, 'getCapabilities', {});
    expect(caps.cacheCapabilities?.digestFunctions).toEqual([reapi.DigestFunction.Value.SHA256, reapi.DigestFunction.Value.BLAKE3]);
    const md5 = Digest.ofBytes(text('x'), { digestFunction: 'md5' });
    await expectStatus(unary(h.cas, 'findMissingBlobs', { digestFunction: reapi.DigestFunction.Value.MD5, blobDigests: [md5.toProto()] }), Code.INVALID_ARGUMENT);
    await expectStatus(readStream(h.byteStream, 'read', { resourceName: md5.toByteStreamReadPath() }), Code.INVALID_ARGUMENT);
  });
});

async function findDirsNamed(root: string, names: Set<string>): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const full = join(root, entry.name);
    if (names.has(entry.name)) found.push(full);
    else found.push(...(await findDirsNamed(full, names)));
  }
  return found;
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) if (entry.isFile()) out.push(entry.name);
  return out;
}

import { describe, expect, it } from 'vitest';
import { BlobStoreActionCache } from '../../../src/lib/actioncache/action-cache.js';
import { CompletenessCheckingActionCache } from '../../../src/lib/actioncache/completeness-checking-action-cache.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, type StatusError } from '../../../src/lib/errors/status-error.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { bytes, expectCode, RecordingBlobStore, rejectionOf } from '../../helpers/blob-store-contract.js';

type Part = 'outputFile' | 'stdout' | 'rootFile' | 'nestedFile' | 'tree';

/**
 * An action result with an output file, stdout, an empty stderr, and one output directory whose Tree
 * holds a root with a file and a subdirectory (carried in the Tree) with another file. Every blob is
 * in the CAS except the parts named in `omit`.
 */
async function setup(omit: readonly Part[] = []) {
  const casMemory = new MemoryBlobStore({ maxSizeBytes: 1 << 20 });
  const cas = new RecordingBlobStore(casMemory);
  const base = new BlobStoreActionCache(new MemoryBlobStore({ maxSizeBytes: 1 << 20 }));
  const cache = new CompletenessCheckingActionCache(base, cas);
  const store = async (part: Part, digest: Digest, data: Uint8Array) => {
    if (!omit.includes(part)) await casMemory.put(digest, data);
    return digest;
  };
  const blob = (part: Part, text: string) => store(part, Digest.ofBytes(bytes(text)), bytes(text));
  const outputFile = await blob('outputFile', 'output file');
  const stdout = await blob('stdout', 'stdout text');
  const rootFile = await blob('rootFile', 'file in root');
  const nestedFile = await blob('nestedFile', 'file in subdirectory');
  const child: reapi.IDirectory = { files: [{ name: 'nested.txt', digest: nestedFile.toProto() }] };
  const childDigest = encodeWithDigest(reapi.Directory, child).digest;
  const tree = encodeWithDigest(reapi.Tree, {
    root: { files: [{ name: 'root.txt', digest: rootFile.toProto() }], directories: [{ name: 'sub', digest: childDigest.toProto() }] },
    children: [child],
  });
  await store('tree', tree.digest, tree.bytes);
  const actionDigest = Digest.ofBytes(bytes('the action'));
  await base.updateActionResult(actionDigest, {
    outputFiles: [{ path: 'out.txt', digest: outputFile.toProto() }],
    outputDirectories: [{ path: 'outdir', treeDigest: tree.digest.toProto() }],
    stdoutDigest: stdout.toProto(),
    stderrDigest: Digest.empty().toProto(),
  });
  cas.take();
  return { casMemory, cas, base, cache, actionDigest, outputFile, stdout, rootFile, nestedFile, tree: tree.digest };
}

describe('CompletenessCheckingActionCache', () => {
  it('returns a hit whose every referenced blob is in the CAS, checked in one batch', async () => {
    const { cas, cache, actionDigest, outputFile, stdout, rootFile, nestedFile, tree } = await setup();
    const got = await cache.getActionResult(actionDigest);
    expect(got.outputFiles?.[0]?.path).toBe('out.txt');
    const calls = cas.take();
    expect(calls.filter((c) => c.verb === 'get')).toEqual([{ verb: 'get', digests: [tree.toString()] }]);
    const findMissing = calls.filter((c) => c.verb === 'findMissing');
    expect(findMissing).toHaveLength(1);
    // The subdirectory's Directory travels inside the Tree, so it is not asked for, nor is the empty stderr.
    expect([...findMissing[0]!.digests].sort()).toEqual(
      [outputFile, stdout, tree, rootFile, nestedFile].map(String).sort(),
    );
  });

  for (const part of ['outputFile', 'stdout', 'rootFile', 'nestedFile', 'tree'] as const) {
    it(`reports a miss (NOT_FOUND) when the ${part} blob is gone from the CAS`, async () => {
      const fixture = await setup([part]);
      const err = (await rejectionOf(fixture.cache.getActionResult(fixture.actionDigest))) as StatusError;
      expectCode(err, Code.NOT_FOUND);
      expect(err.message).toContain(fixture[part].toString());
    });
  }

  it('requires subdirectories that the Tree does not carry to be in the CAS', async () => {
    const { casMemory, base, actionDigest } = await setup();
    const elsewhere = encodeWithDigest(reapi.Directory, { files: [{ name: 'x', digest: Digest.ofBytes(bytes('x')).toProto() }] }).digest;
    const tree = encodeWithDigest(reapi.Tree, { root: { directories: [{ name: 'ext', digest: elsewhere.toProto() }] } });
    await casMemory.put(tree.digest, tree.bytes);
    await base.updateActionResult(actionDigest, { outputDirectories: [{ path: 'd', treeDigest: tree.digest.toProto() }] });
    const err = (await rejectionOf(new CompletenessCheckingActionCache(base, casMemory).getActionResult(actionDigest))) as StatusError;
    expectCode(err, Code.NOT_FOUND);
    expect(err.message).toContain(elsewhere.toString());
  });

  it('treats a result with a malformed digest as a miss', async () => {
    const { base, cache, actionDigest } = await setup();
    await base.updateActionResult(actionDigest, { outputFiles: [{ path: 'bad', digest: { hash: 'XYZ', sizeBytes: 1 } }] });
    expectCode(await rejectionOf(cache.getActionResult(actionDigest)), Code.NOT_FOUND);
  });

  it('passes a plain miss through as NOT_FOUND without asking the CAS', async () => {
    const { cas, cache } = await setup();
    expectCode(await rejectionOf(cache.getActionResult(Digest.ofBytes(bytes('never run')))), Code.NOT_FOUND);
    expect(cas.take()).toEqual([]);
  });

  it('writes results through to the base cache', async () => {
    const { base, cache } = await setup();
    const other = Digest.ofBytes(bytes('another action'));
    await cache.updateActionResult(other, { exitCode: 7 });
    expect((await base.getActionResult(other)).exitCode).toBe(7);
  });
});

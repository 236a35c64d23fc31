import { afterEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { type Harness, expectStatus, readStream, reapi, startHarness, unary, uploadBlobs } from './harness.js';

const text = (s: string) => new TextEncoder().encode(s);

describe('apiserver ContentAddressableStorage', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  describe('FindMissingBlobs', () => {
    it('reports absent blobs once each, never the empty blob, and not those uploaded', async () => {
      h = await startHarness();
      const [present] = await uploadBlobs(h, [text('present')]);
      const absent = Digest.ofBytes(text('absent'));
      const res = await unary<reapi.FindMissingBlobsResponse>(h.cas, 'findMissingBlobs', {
        blobDigests: [absent.toProto(), present!.toProto(), Digest.empty().toProto(), absent.toProto()],
      });
      expect(res.missingBlobDigests).toEqual([reapi.Digest.fromObject(absent.toProto())]);
    });

    it('rejects a malformed digest naming its position in the request', async () => {
      h = await startHarness();
      const err = await expectStatus(
        unary(h.cas, 'findMissingBlobs', { blobDigests: [Digest.empty().toProto(), { hash: 'xyz', sizeBytes: 3 }] }),
        Code.INVALID_ARGUMENT,
      );
      expect(err.fieldViolations()[0]?.field).toBe('blob_digests[1].hash');
    });

    it('validates every digest of a large request, naming the position of a late malformed one', async () => {
      h = await startHarness();
      const digests = Array.from({ length: 3000 }, (_, i) => Digest.ofBytes(text(`blob ${i}`)).toProto());
      digests[2999] = { hash: 'A'.repeat(64), sizeBytes: 1 };
      const err = await expectStatus(unary(h.cas, 'findMissingBlobs', { blobDigests: digests }), Code.INVALID_ARGUMENT);
      expect(err.fieldViolations()[0]?.field).toBe('blob_digests[2999].hash');
      digests[2999] = { hash: 'a'.repeat(64), sizeBytes: -1 };
      const negative = await expectStatus(unary(h.cas, 'findMissingBlobs', { blobDigests: digests }), Code.INVALID_ARGUMENT);
      expect(negative.fieldViolations()[0]?.field).toBe('blob_digests[2999].size_bytes');
    });

    it('rejects a digest function the server does not serve', async () => {
      h = await startHarness({ capabilities: { digestFunctions: ['sha256'] } });
      const sha1 = Digest.ofBytes(text('x'), { digestFunction: 'sha1' });
      const err = await expectStatus(unary(h.cas, 'findMissingBlobs', { blobDigests: [sha1.toProto()] }), Code.INVALID_ARGUMENT);
      expect(err.fieldViolations()[0]?.field).toBe('blob_digests[0]');
      expect(err.message).toContain('sha1');
    });
  });

  describe('BatchUpdateBlobs', () => {
    it('stores good blobs and fails only the blob whose data does not match its digest', async () => {
      h = await startHarness();
      const good1 = text('good one');
      const good2 = text('good two');
      const claimed = Digest.ofBytes(text('what the client claims'));
      const res = await unary<reapi.BatchUpdateBlobsResponse>(h.cas, 'batchUpdateBlobs', {
        requests: [
          { digest: Digest.ofBytes(good1).toProto(), data: good1 },
          { digest: { hash: claimed.hash, sizeBytes: 9 }, data: text('other 9 b') },
          { digest: Digest.ofBytes(good2).toProto(), data: good2 },
        ],
      });
      expect(res.responses.map((r) => r.status?.code ?? 0)).toEqual([Code.OK, Code.INVALID_ARGUMENT, Code.OK]);
      expect(res.responses[1]!.digest?.hash).toBe(claimed.hash);

      const missing = await unary<reapi.FindMissingBlobsResponse>(h.cas, 'findMissingBlobs', {
        blobDigests: [Digest.ofBytes(good1).toProto(), { hash: claimed.hash, sizeBytes: 9 }, Digest.ofBytes(good2).toProto()],
      });
      expect(missing.missingBlobDigests.map((d) => d.hash)).toEqual([claimed.hash]);
    });

    it('fails a blob whose data length differs from its declared size, and one with an unsupported compressor', async () => {
      h = await startHarness();
      const data = text('twelve bytes');
      const res = await unary<reapi.BatchUpdateBlobsResponse>(h.cas, 'batchUpdateBlobs', {
        requests: [
          { digest: { hash: Digest.ofBytes(data).hash, sizeBytes: 13 }, data },
          { digest: Digest.ofBytes(data).toProto(), data, compressor: reapi.Compressor.Value.BROTLI },
        ],
      });
      expect(res.responses.map((r) => r.status?.code)).toEqual([Code.INVALID_ARGUMENT, Code.INVALID_ARGUMENT]);
      expect(res.responses[0]!.status?.message).toContain('13');
      expect(res.responses[1]!.status?.message).toContain('BROTLI');
    });

    it('refuses a whole batch larger than the advertised max_batch_total_size_bytes', async () => {
      h = await startHarness({ capabilities: { maxBatchTotalSizeBytes: 1000 } });
      const big = new Uint8Array(600).fill(1);
      const big2 = new Uint8Array(600).fill(2);
      const err = await expectStatus(
        unary(h.cas, 'batchUpdateBlobs', {
          requests: [big, big2].map((data) => ({ digest: Digest.ofBytes(data).toProto(), data })),
        }),
        Code.INVALID_ARGUMENT,
      );
      expect(err.fieldViolations()[0]?.field).toBe('requests');
      expect(err.message).toContain('1000');
    });
  });

  describe('BatchReadBlobs', () => {
    it('returns present blobs and NOT_FOUND per absent blob', async () => {
      h = await startHarness();
      const [a] = await uploadBlobs(h, [text('alpha')]);
      const absent = Digest.ofBytes(text('never uploaded'));
      const res = await unary<reapi.BatchReadBlobsResponse>(h.cas, 'batchReadBlobs', {
        digests: [a!.toProto(), absent.toProto(), Digest.empty().toProto()],
      });
      expect(res.responses.map((r) => r.status?.code ?? 0)).toEqual([Code.OK, Code.NOT_FOUND, Code.OK]);
      expect(new TextDecoder().decode(res.responses[0]!.data)).toBe('alpha');
      expect(res.responses[1]!.data?.length ?? 0).toBe(0);
      expect(res.responses[1]!.digest?.hash).toBe(absent.hash);
      expect(res.responses[2]!.data?.length ?? 0).toBe(0);
    });

    it('refuses reads whose sizes sum past the advertised limit', async () => {
      h = await startHarness({ capabilities: { maxBatchTotalSizeBytes: 1000 } });
      const d = Digest.create('', 'sha256', 'a'.repeat(64), 800);
      const err = await expectStatus(unary(h.cas, 'batchReadBlobs', { digests: [d.toProto(), d.toProto()] }), Code.INVALID_ARGUMENT);
      expect(err.fieldViolations()[0]?.field).toBe('digests');
    });
  });

  describe('GetTree', () => {
    /**
     * root ─┬─ a ── c
     *       └─ b ─┬─ d
     *             └─ e (also reached through d, and listed once)
     */
    async function uploadTree(h: Harness) {
      const dir = (files: string[], dirs: [string, Digest][] = []) =>
        encodeWithDigest(reapi.Directory, {
          files: files.map((name) => ({ name, digest: Digest.empty().toProto() })),
          directories: dirs.map(([name, d]) => ({ name, digest: d.toProto() })),
        });
      const e = dir(['e.txt']);
      const d = dir(['d.txt'], [['e', e.digest]]);
      const c = dir(['c.txt']);
      const b = dir(['b.txt'], [['d', d.digest], ['e', e.digest]]);
      const a = dir(['a.txt'], [['c', c.digest]]);
      const root = dir(['root.txt'], [['a', a.digest], ['b', b.digest]]);
      await uploadBlobs(h, [root, a, b, c, d, e].map((x) => x.bytes));
      return { root: root.digest, names: new Map([root, a, b, c, d, e].map((x, i) => [x.digest.hash, 'rabcde'[i]!])) };
    }
    const namesOf = (res: reapi.GetTreeResponse, names: Map<string, string>) =>
      res.directories.map((dir) => names.get(Digest.ofBytes(reapi.Directory.encode(dir).finish()).hash) ?? '?');

    it('streams a three-level tree breadth-first in pages with resumable tokens', async () => {
      h = await startHarness();
      const { root, names } = await uploadTree(h);
      const pages = await readStream<reapi.GetTreeResponse>(h.cas, 'getTree', { rootDigest: root.toProto(), pageSize: 2 });
      expect(pages.map((p) => namesOf(p, names).join(''))).toEqual(['ra', 'bc', 'de']);
      expect(pages[0]!.nextPageToken).not.toBe('');
      expect(pages[2]!.nextPageToken).toBe('');

      // A client whose stream broke after the first page resumes from its token.
      const resumed = await readStream<reapi.GetTreeResponse>(h.cas, 'getTree', {
        rootDigest: root.toProto(),
        pageSize: 2,
        pageToken: pages[0]!.nextPageToken,
      });
      expect(resumed.map((p) => namesOf(p, names).join(''))).toEqual(['bc', 'de']);
    });

    it('returns the whole tree in one page by default', async () => {
      h = await startHarness();
      const { root, names } = await uploadTree(h);
      const pages = await readStream<reapi.GetTreeResponse>(h.cas, 'getTree', { rootDigest: root.toProto() });
      expect(pages.map((p) => namesOf(p, names).join(''))).toEqual(['rabcde']);
    });

    it('rejects a page token that was not issued for this root', async () => {
      h = await startHarness();
      const { root } = await uploadTree(h);
      const err = await expectStatus(readStream(h.cas, 'getTree', { rootDigest: root.toProto(), pageToken: 'bogus!' }), Code.INVALID_ARGUMENT);
      expect(err.fieldViolations()[0]?.field).toBe('page_token');
    });

    it('answers NOT_FOUND for a root that is not in the CAS', async () => {
      h = await startHarness();
      const err = await expectStatus(readStream(h.cas, 'getTree', { rootDigest: Digest.ofBytes(text('nope')).toProto() }), Code.NOT_FOUND);
      expect(err.message).toContain(Digest.ofBytes(text('nope')).toString());
    });
  });

  it('keeps instance names apart with storage.cas_instance_scoping per_instance', async () => {
    h = await startHarness({ storage: { cas: { memory: { max_size_bytes: 16 * 1024 * 1024 } }, action_cache: { memory: { max_size_bytes: 1024 * 1024 } }, cas_instance_scoping: 'per_instance' } });
    const [d] = await uploadBlobs(h, [text('only in instance a')], 'a');
    const inA = await unary<reapi.FindMissingBlobsResponse>(h.cas, 'findMissingBlobs', { instanceName: 'a', blobDigests: [d!.toProto()] });
    const inB = await unary<reapi.FindMissingBlobsResponse>(h.cas, 'findMissingBlobs', { instanceName: 'b', blobDigests: [d!.toProto()] });
    expect(inA.missingBlobDigests).toEqual([]);
    expect(inB.missingBlobDigests.map((m) => m.hash)).toEqual([d!.hash]);
    const readB = await unary<reapi.BatchReadBlobsResponse>(h.cas, 'batchReadBlobs', { instanceName: 'b', digests: [d!.toProto()] });
    expect(readB.responses[0]!.status?.code).toBe(Code.NOT_FOUND);
  });

  it('answers SplitBlob and SpliceBlob with UNIMPLEMENTED when chunking is off', async () => {
    h = await startHarness({ capabilities: { chunking: false } });
    const err = await expectStatus(unary(h.cas, 'splitBlob', { blobDigest: Digest.empty().toProto() }), Code.UNIMPLEMENTED);
    expect(err.message).toContain('SplitBlob');
    await expectStatus(unary(h.cas, 'spliceBlob', { blobDigest: Digest.empty().toProto() }), Code.UNIMPLEMENTED);
  });
});

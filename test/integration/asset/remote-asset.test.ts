/**
 * Remote Asset Fetch and Push over a real apiserver on 127.0.0.1:0 (and on the scheduler's port),
 * called with grpc-js clients built from the asset service definitions, as Bazel or BuildStream would.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { asset, reapi, rpc } from '../../../src/lib/proto/index.js';
import { msToTimestamp } from '../../../src/lib/proto/proto-time.js';
import { fetchService, pushService } from '../../../src/lib/proto/services.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { startScheduler } from '../../../src/server/scheduler.js';
import { expectStatus, type Harness, startHarness, unary, uploadBlobs } from '../apiserver/harness.js';

const FetchClient = grpc.makeGenericClientConstructor(fetchService, 'Fetch');
const PushClient = grpc.makeGenericClientConstructor(pushService, 'Push');
type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

const text = (s: string) => new TextEncoder().encode(s);
const T0 = 1_700_000_000_000;
const URN = 'urn:fdc:buildstream.build:2020:v1:project/element/0123abcd';

describe('Remote Asset Fetch and Push', () => {
  let h: Harness | undefined;
  let clients: AnyClient[] = [];
  afterEach(async () => {
    for (const c of clients) c.close();
    clients = [];
    await h?.close();
    h = undefined;
  });

  async function start(clock = new FakeClock(T0)) {
    h = await startHarness({ inMemory: true, clock });
    const target = h.server.address;
    const fetch = new FetchClient(target, grpc.credentials.createInsecure()) as unknown as AnyClient;
    const push = new PushClient(target, grpc.credentials.createInsecure()) as unknown as AnyClient;
    clients.push(fetch, push);
    return { h, fetch, push, clock };
  }

  /** A directory `{ a.txt, sub/b.txt }` uploaded to the CAS; returns its root digest and file digests. */
  async function uploadTree(harness: Harness) {
    const [a, b] = await uploadBlobs(harness, [text('file a'), text('file b')]);
    const sub = encodeWithDigest(reapi.Directory, { files: [{ name: 'b.txt', digest: b!.toProto() }] });
    const root = encodeWithDigest(reapi.Directory, {
      files: [{ name: 'a.txt', digest: a!.toProto() }],
      directories: [{ name: 'sub', digest: sub.digest.toProto() }],
    });
    await uploadBlobs(harness, [sub.bytes, root.bytes]);
    return { root: root.digest, files: [a!, b!], sub: sub.digest };
  }

  it('refuses an empty URI list with INVALID_ARGUMENT on every method (BuildStream probes with it)', async () => {
    const { fetch, push } = await start();
    for (const [client, method] of [[fetch, 'fetchBlob'], [fetch, 'fetchDirectory'], [push, 'pushBlob'], [push, 'pushDirectory']] as const) {
      const err = await expectStatus(unary(client, method, { uris: [] }), Code.INVALID_ARGUMENT);
      const bad = rpc.BadRequest.decode(err.details.find((d) => d.typeUrl.endsWith('google.rpc.BadRequest'))!.value);
      expect(bad.fieldViolations[0]!.field).toBe('uris');
    }
  });

  it('answers NOT_FOUND for a URI nothing was pushed under', async () => {
    const { fetch } = await start();
    await expectStatus(unary(fetch, 'fetchDirectory', { uris: [URN] }), Code.NOT_FOUND);
    await expectStatus(unary(fetch, 'fetchBlob', { uris: ['urn:example:never-pushed'] }), Code.NOT_FOUND);
  });

  it('pushes a blob under URIs and qualifiers and fetches it back by any of the URIs, qualifiers in any order', async () => {
    const { h, fetch, push } = await start();
    const [blob] = await uploadBlobs(h, [text('the asset')]);
    const qualifiers = [{ name: 'vcs.commit', value: 'abc' }, { name: 'checksum.sri', value: 'sha256-xyz' }];
    await unary(push, 'pushBlob', { uris: ['urn:x:one', 'urn:x:two'], qualifiers, blobDigest: blob!.toProto() });

    const res = await unary<asset.FetchBlobResponse>(fetch, 'fetchBlob', {
      uris: ['urn:x:absent', 'urn:x:two'],
      qualifiers: [...qualifiers].reverse(),
    });
    expect(res.status?.code ?? 0).toBe(Code.OK);
    expect(res.uri).toBe('urn:x:two');
    expect(res.blobDigest?.hash).toBe(blob!.hash);
    expect(Number(res.blobDigest?.sizeBytes)).toBe(blob!.sizeBytes);
    expect(res.digestFunction).toBe(reapi.DigestFunction.Value.SHA256);
    // Qualifiers are part of the name: other (or no) qualifiers are another asset.
    await expectStatus(unary(fetch, 'fetchBlob', { uris: ['urn:x:one'] }), Code.NOT_FOUND);
    await expectStatus(unary(fetch, 'fetchBlob', { uris: ['urn:x:one'], qualifiers: [qualifiers[0]] }), Code.NOT_FOUND);
    // A blob and a directory of the same URI are different assets.
    await expectStatus(unary(fetch, 'fetchDirectory', { uris: ['urn:x:one'], qualifiers }), Code.NOT_FOUND);
  });

  it('pushes a directory and fetches its root digest, the way BuildStream names artifacts', async () => {
    const { h, fetch, push } = await start();
    const { root } = await uploadTree(h);
    await unary(push, 'pushDirectory', { uris: [URN], rootDirectoryDigest: root.toProto() });
    const res = await unary<asset.FetchDirectoryResponse>(fetch, 'fetchDirectory', { uris: [URN] });
    expect(res.uri).toBe(URN);
    expect(res.rootDirectoryDigest?.hash).toBe(root.hash);
  });

  it('refuses to push content that is not in the CAS, with the missing blobs as PreconditionFailure', async () => {
    const { h, push } = await start();
    const absent = Digest.ofBytes(text('never uploaded'));
    const err = await expectStatus(unary(push, 'pushBlob', { uris: ['urn:x:absent'], blobDigest: absent.toProto() }), Code.FAILED_PRECONDITION);
    const failure = rpc.PreconditionFailure.decode(err.details.find((d) => d.typeUrl.endsWith('google.rpc.PreconditionFailure'))!.value);
    expect(failure.violations.map((v) => v.subject)).toEqual([`blobs/${absent.hash}/${absent.sizeBytes}`]);

    // A directory whose nested file is absent is refused too.
    const sub = encodeWithDigest(reapi.Directory, { files: [{ name: 'gone', digest: absent.toProto() }] });
    const root = encodeWithDigest(reapi.Directory, { directories: [{ name: 'sub', digest: sub.digest.toProto() }] });
    await uploadBlobs(h, [sub.bytes, root.bytes]);
    await expectStatus(unary(push, 'pushDirectory', { uris: [URN], rootDirectoryDigest: root.digest.toProto() }), Code.FAILED_PRECONDITION);
  });

  it('skips records older than oldest_content_accepted and past their expire_at', async () => {
    const { h, fetch, push, clock } = await start();
    const [blob] = await uploadBlobs(h, [text('dated')]);
    await unary(push, 'pushBlob', { uris: ['urn:x:dated'], blobDigest: blob!.toProto(), expireAt: msToTimestamp(T0 + 60_000) });

    const fresh = await unary<asset.FetchBlobResponse>(fetch, 'fetchBlob', { uris: ['urn:x:dated'], oldestContentAccepted: msToTimestamp(T0 - 1000) });
    expect(fresh.blobDigest?.hash).toBe(blob!.hash);
    expect(Number(fresh.expiresAt?.seconds)).toBe((T0 + 60_000) / 1000);
    await expectStatus(unary(fetch, 'fetchBlob', { uris: ['urn:x:dated'], oldestContentAccepted: msToTimestamp(T0 + 1000) }), Code.NOT_FOUND);

    await clock.advance(60_000);
    await expectStatus(unary(fetch, 'fetchBlob', { uris: ['urn:x:dated'] }), Code.NOT_FOUND);
  });

  it('answers NOT_FOUND once recorded content is no longer whole in the CAS', async () => {
    // A memory CAS small enough that new uploads evict the pushed tree's files.
    h = await startHarness({
      clock: new FakeClock(T0),
      storage: { cas: { memory: { max_size_bytes: 4096 } }, action_cache: { memory: { max_size_bytes: 1 << 20 } }, asset: { memory: { max_size_bytes: 1 << 20 } } },
    });
    const fetch = new FetchClient(h.server.address, grpc.credentials.createInsecure()) as unknown as AnyClient;
    const push = new PushClient(h.server.address, grpc.credentials.createInsecure()) as unknown as AnyClient;
    clients.push(fetch, push);
    const { root } = await uploadTree(h);
    await unary(push, 'pushDirectory', { uris: [URN], rootDirectoryDigest: root.toProto() });
    await unary(fetch, 'fetchDirectory', { uris: [URN] });
    // Fill the CAS with other blobs until the tree's first file is gone.
    for (let i = 0; i < 8; i++) await uploadBlobs(h, [new Uint8Array(1000).fill(i + 1)]);
    const missingBefore = await h.server.contentAddressableStorage.findMissing([Digest.ofBytes(text('file a'))]);
    expect(missingBefore).toHaveLength(1);
    await expectStatus(unary(fetch, 'fetchDirectory', { uris: [URN] }), Code.NOT_FOUND);
  });

  it('refuses duplicate qualifiers and unserved digest functions with INVALID_ARGUMENT', async () => {
    const { fetch } = await start();
    await expectStatus(
      unary(fetch, 'fetchBlob', { uris: ['urn:x'], qualifiers: [{ name: 'a', value: '1' }, { name: 'a', value: '2' }] }),
      Code.INVALID_ARGUMENT,
    );
    await expectStatus(unary(fetch, 'fetchBlob', { uris: ['urn:x'], digestFunction: reapi.DigestFunction.Value.VSO }), Code.INVALID_ARGUMENT);
  });

  it('is served on the scheduler port too, over the stores the scheduler shares', async () => {
    const { h, push } = await start();
    const scheduler = await startScheduler({
      listenAddress: '127.0.0.1:0',
      contentAddressableStorage: h.server.contentAddressableStorage,
      actionCache: h.server.actionCache,
      assetIndex: h.server.assetIndex,
      uploadsVerified: true,
      logger: silentLogger,
    });
    try {
      expect(scheduler.services).toEqual(expect.arrayContaining(['build.bazel.remote.asset.v1.Fetch', 'build.bazel.remote.asset.v1.Push']));
      const [blob] = await uploadBlobs(h, [text('shared')]);
      await unary(push, 'pushBlob', { uris: ['urn:x:shared'], blobDigest: blob!.toProto() });
      const fetch = new FetchClient(scheduler.address, grpc.credentials.createInsecure()) as unknown as AnyClient;
      clients.push(fetch);
      const res = await unary<asset.FetchBlobResponse>(fetch, 'fetchBlob', { uris: ['urn:x:shared'] });
      expect(res.blobDigest?.hash).toBe(blob!.hash);
    } finally {
      await scheduler.close();
    }
  });
});

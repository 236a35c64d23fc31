import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildDirectoryTree } from '../../../src/lib/cas/merkle.js';
import { CasClient, packBatches } from '../../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../../src/lib/client/connection.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import type { Clock } from '../../../src/lib/util/clock.js';
import { expectCode, patternBytes, rejectionOf } from '../../helpers/blob-store-contract.js';
import { type CuttingProxy, type StorageServer, recordingInterceptor, startCuttingProxy, startStorageServer } from './storage-server.js';

/** A clock whose sleeps return at once and are recorded, so retry tests take no wall time. */
function instantClock(sleeps: number[]): Clock {
  return { now: () => 0, sleep: async (ms) => void sleeps.push(ms) };
}

const text = (s: string) => new TextEncoder().encode(s);
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

let server: StorageServer;
let connection: RemoteConnection;
let calls: string[];
let work: string;

beforeEach(async () => {
  server = await startStorageServer();
  calls = [];
  connection = new RemoteConnection(server.address, { interceptors: [recordingInterceptor(calls)] });
  work = await mkdtemp(join(tmpdir(), 'bzutil-cas-client-'));
});
afterEach(async () => {
  connection.close();
  await server.close();
  await rm(work, { recursive: true, force: true });
});

describe('CasClient.uploadBlobs', () => {
  it('uploads only the blobs the CAS lacks', async () => {
    const cas = new CasClient(connection);
    const a = text('alpha');
    const b = text('beta');
    const first = await cas.uploadBlobs([{ digest: cas.digestOf(a), data: a }]);
    expect(first).toEqual({ uploadedBlobs: 1, uploadedBytes: 5, skippedBlobs: 0, skippedBytes: 0 });

    calls.length = 0;
    const second = await cas.uploadBlobs([
      { digest: cas.digestOf(a), data: a },
      { digest: cas.digestOf(b), data: b },
    ]);
    expect(second).toEqual({ uploadedBlobs: 1, uploadedBytes: 4, skippedBlobs: 1, skippedBytes: 5 });
    expect(calls).toEqual(['FindMissingBlobs', 'BatchUpdateBlobs']);
    expect(await server.contentAddressableStorage.findMissing([cas.digestOf(a), cas.digestOf(b)])).toEqual([]);
  });

  it('packs small blobs into batches under the batch limit', async () => {
    const cas = new CasClient(connection, { maxBatchTotalSizeBytes: 10_000 });
    const blobs = Array.from({ length: 30 }, (_, i) => patternBytes(1000, i + 1));
    const result = await cas.uploadBlobs(blobs.map((data) => ({ digest: cas.digestOf(data), data })));
    expect(result.uploadedBlobs).toBe(30);
    // 1000 bytes plus 200 bytes of per-entry allowance: 8 blobs fit in 10 000 bytes.
    expect(calls.filter((c) => c === 'BatchUpdateBlobs')).toHaveLength(4);
    expect(calls).not.toContain('Write');
  });

  it('streams large files with ByteStream Write and never batches them', async () => {
    const cas = new CasClient(connection);
    const data = patternBytes(3 * 1024 * 1024 + 17);
    const path = join(work, 'large.bin');
    await writeFile(path, data);
    const digest = cas.digestOf(data);
    await cas.uploadBlobs([{ digest, path }]);
    // Capabilities is asked once, for the batch limit, only when something needs sending.
    expect(calls).toEqual(['FindMissingBlobs', 'GetCapabilities', 'Write']);
    expect(sha256(await server.contentAddressableStorage.get(digest))).toBe(digest.hash);
  });

  it('resumes a ByteStream upload from the committed size after the connection drops', async () => {
    const proxy: CuttingProxy = await startCuttingProxy(server.address);
    const viaProxy = new RemoteConnection(proxy.address, { interceptors: [recordingInterceptor(calls)] });
    try {
      const sleeps: number[] = [];
      const cas = new CasClient(viaProxy, { retry: { clock: instantClock(sleeps) } });
      const data = patternBytes(6 * 1024 * 1024, 3);
      const digest = cas.digestOf(data);
      // Let FindMissing through, then cut the Write about 2.5 MiB in.
      await cas.findMissingBlobs([digest]);
      proxy.cutAfterClientBytes(2.5 * 1024 * 1024);
      await cas.writeBlob(digest, data);
      expect(proxy.cuts).toBe(1);
      expect(calls.filter((c) => c === 'Write')).toHaveLength(2);
      expect(calls).toContain('QueryWriteStatus');
      expect(sleeps).toHaveLength(1);
      expect(sha256(await server.contentAddressableStorage.get(digest))).toBe(digest.hash);
    } finally {
      viaProxy.close();
      await proxy.close();
    }
  });

  it('names the blob when the server rejects an upload whose data does not match its digest', async () => {
    const cas = new CasClient(connection);
    const wrong = Digest.ofBytes(text('something else'));
    const err = await rejectionOf(cas.uploadBlobs([{ digest: wrong, data: text('not that') }]));
    expectCode(err, Code.INVALID_ARGUMENT);
    expect((err as Error).message).toContain(wrong.toString());
  });

  it('fails clearly when a file changed size after it was hashed', async () => {
    const cas = new CasClient(connection);
    const path = join(work, 'shrinks.txt');
    await writeFile(path, 'short');
    const err = await rejectionOf(cas.uploadBlobs([{ digest: Digest.ofBytes(text('much longer content')), path }]));
    expectCode(err, Code.FAILED_PRECONDITION);
    expect((err as Error).message).toMatch(/modified after hashing/);
  });
});

describe('CasClient.findMissingBlobs', () => {
  it('splits large digest lists into requests of at most 10 000 digests, keeping argument order', async () => {
    const cas = new CasClient(connection);
    const present = text('present');
    await cas.uploadBlobs([{ digest: cas.digestOf(present), data: present }]);
    calls.length = 0;
    const digests = Array.from({ length: 25_000 }, (_, i) => Digest.create('', 'sha256', sha256(text(`blob ${i}`)), i + 1));
    const query = [digests[0]!, cas.digestOf(present), ...digests.slice(1)];
    const missing = await cas.findMissingBlobs(query);
    expect(calls.filter((c) => c === 'FindMissingBlobs')).toHaveLength(3);
    expect(missing).toHaveLength(25_000);
    expect(missing[0]!.equals(digests[0]!)).toBe(true);
    expect(missing[24_999]!.equals(digests[24_999]!)).toBe(true);
  });

  it('reports each missing blob once, even when it is asked about twice in different requests', async () => {
    const cas = new CasClient(connection);
    const present = text('present');
    await cas.uploadBlobs([{ digest: cas.digestOf(present), data: present }]);
    const absent = Digest.ofBytes(text('absent'));
    // A distinct but equal Digest value 12 000 positions later: the second request asks about it again.
    const again = Digest.create('', 'sha256', absent.hash, absent.sizeBytes);
    const filler = Array.from({ length: 12_000 }, (_, i) => Digest.create('', 'sha256', sha256(text(`filler ${i}`)), i + 1));
    const missing = await cas.findMissingBlobs([absent, cas.digestOf(present), ...filler, again, cas.digestOf(present)]);
    expect(missing).toHaveLength(12_001);
    expect(missing[0]).toBe(absent);
    expect(missing.filter((d) => d.equals(absent))).toHaveLength(1);
    expect(missing.some((d) => d.equals(cas.digestOf(present)))).toBe(false);
  });

  it('never reports the empty blob as missing and does not ask about it', async () => {
    const cas = new CasClient(connection);
    expect(await cas.findMissingBlobs([Digest.empty()])).toEqual([]);
  });
});

describe('CasClient reads', () => {
  it('reads small blobs with BatchReadBlobs and large ones with ByteStream', async () => {
    const cas = new CasClient(connection);
    const small = text('small blob');
    const large = patternBytes(2 * 1024 * 1024 + 5);
    await cas.uploadBlobs([
      { digest: cas.digestOf(small), data: small },
      { digest: cas.digestOf(large), data: large },
    ]);
    calls.length = 0;
    expect(Buffer.from(await cas.readBlob(cas.digestOf(small))).toString()).toBe('small blob');
    expect(calls).toEqual(['BatchReadBlobs']);
    calls.length = 0;
    expect(sha256(await cas.readBlob(cas.digestOf(large)))).toBe(cas.digestOf(large).hash);
    expect(calls).toEqual(['Read']);
  });

  it('keeps NOT_FOUND and names the absent blob', async () => {
    const cas = new CasClient(connection);
    const absent = Digest.ofBytes(text('never uploaded, and rather long'));
    const err = await rejectionOf(cas.readBlob(absent));
    expectCode(err, Code.NOT_FOUND);
    expect((err as Error).message).toContain(absent.toString());
    const big = Digest.create('', 'sha256', absent.hash, 5 * 1024 * 1024);
    expectCode(await rejectionOf(cas.downloadToFile(big, join(work, 'never'))), Code.NOT_FOUND);
    expect(await readdir(work)).toEqual([]);
  });

  it('streams a large blob to a file and verifies its hash', async () => {
    const cas = new CasClient(connection);
    const data = patternBytes(5 * 1024 * 1024 + 3, 11);
    const digest = cas.digestOf(data);
    await cas.putBlob(digest, data);
    const out = join(work, 'sub', 'out.bin');
    await cas.downloadToFile(digest, out, { isExecutable: true });
    expect(sha256(await readFile(out))).toBe(digest.hash);
    expect((await stat(out)).mode & 0o100).toBe(0o100);
    // No temporary file is left next to it.
    expect(await readdir(join(work, 'sub'))).toEqual(['out.bin']);
  });

  it('downloads many blobs to files, fetching a shared digest once', async () => {
    const cas = new CasClient(connection);
    const a = text('same content');
    const large = patternBytes(1024 * 1024 + 1, 5);
    await cas.uploadBlobs([
      { digest: cas.digestOf(a), data: a },
      { digest: cas.digestOf(large), data: large },
    ]);
    calls.length = 0;
    await cas.downloadToFiles([
      { digest: cas.digestOf(a), path: join(work, 'one') },
      { digest: cas.digestOf(a), path: join(work, 'two') },
      { digest: Digest.empty(), path: join(work, 'empty') },
      { digest: cas.digestOf(large), path: join(work, 'large') },
    ]);
    expect(calls.filter((c) => c === 'BatchReadBlobs')).toHaveLength(1);
    expect((await readFile(join(work, 'two'))).toString()).toBe('same content');
    expect((await readFile(join(work, 'empty'))).length).toBe(0);
    expect(sha256(await readFile(join(work, 'large')))).toBe(cas.digestOf(large).hash);
  });

  it('returns every directory of a tree from GetTree', async () => {
    const cas = new CasClient(connection);
    const dir = join(work, 'tree');
    await mkdir(join(dir, 'a/b'), { recursive: true });
    await writeFile(join(dir, 'a/b/file'), 'x');
    await writeFile(join(dir, 'top'), 'y');
    const tree = await buildDirectoryTree(dir);
    await cas.uploadBlobs([...tree.directories.values()].map((d) => ({ digest: d.digest, data: d.bytes })));
    const directories = await cas.getTree(tree.rootDigest);
    expect(directories).toHaveLength(3);
  });
});

describe('CasClient retries', () => {
  it('retries UNAVAILABLE a bounded number of times with growing backoff, then fails', async () => {
    const sleeps: number[] = [];
    const dead = new RemoteConnection('127.0.0.1:1');
    try {
      const cas = new CasClient(dead, { retry: { maxAttempts: 4, clock: instantClock(sleeps), random: () => 0.999 } });
      const err = await rejectionOf(cas.findMissingBlobs([Digest.ofBytes(text('x'))]));
      expectCode(err, Code.UNAVAILABLE);
      expect((err as Error).message).toMatch(/^Failed to find missing blobs/);
      expect(sleeps).toEqual([99, 199, 399]);
    } finally {
      dead.close();
    }
  });
});

describe('packBatches', () => {
  it('starts a new batch when the next item would exceed the limit, and never leaves one empty', () => {
    expect(packBatches([100, 100, 100, 5000], (n) => n, 700)).toEqual([[100, 100], [100], [5000]]);
    expect(packBatches([], (n: number) => n, 700)).toEqual([]);
  });
});

/**
 * A content-addressed FilesystemBlobStore hashes a blob file again before serving it when the file
 * may have changed since it was stored (its modification time lost the store's mark), and drops it
 * when it no longer matches its digest. The action cache (not content-addressed) is never hashed.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { blobFilePath } from '../../../src/lib/blobstore/blob-directory-layout.js';
import { SYNC_WRITE_MAX_BYTES } from '../../../src/lib/blobstore/blob-temp-file.js';
import { FilesystemBlobStore } from '../../../src/lib/blobstore/filesystem-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { bytes, collect, expectCode, patternBytes, rejectionOf } from '../../helpers/blob-store-contract.js';

describe('FilesystemBlobStore: blob files in doubt', () => {
  let dir: string;
  const opened: FilesystemBlobStore[] = [];
  const open = async (verifyOnDoubt: boolean, sizesFromFileNames = false) => {
    const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 64 * 1024 * 1024, verifyOnDoubt, sizesFromFileNames });
    opened.push(store);
    return store;
  };
  const fileOf = (d: Digest) => blobFilePath(dir, d.instanceName, d.digestFunction, d.hash, d.sizeBytes);
  const mtimeNs = async (d: Digest) => (await fs.stat(fileOf(d), { bigint: true })).mtimeNs;
  /** Overwrites a stored blob in place with other bytes of the same length, as a hostile process would. */
  const tamper = async (d: Digest, data: Uint8Array) => {
    await fs.chmod(fileOf(d), 0o644);
    await fs.writeFile(fileOf(d), data);
  };

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-fs-doubt-'));
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('marks every stored blob file with a modification time of exactly half past a second', async () => {
    const store = await open(true);
    const data = bytes('marked');
    const digest = Digest.ofBytes(data);
    await store.put(digest, data);
    expect((await mtimeNs(digest)) % 1_000_000_000n).toBe(500_000_000n);
  });

  it('writes small whole blobs (synchronous calls), large ones and fsynced ones alike: read-only and marked', async () => {
    // blob-temp-file.ts: up to SYNC_WRITE_MAX_BYTES a whole blob takes the synchronous path.
    const small = patternBytes(SYNC_WRITE_MAX_BYTES);
    const large = patternBytes(SYNC_WRITE_MAX_BYTES + 1);
    const store = await open(true);
    const fsynced = await FilesystemBlobStore.open({ path: path.join(dir, 'fsync'), maxSizeBytes: 1 << 20, fsync: true });
    opened.push(fsynced);
    for (const data of [small, large]) {
      const digest = Digest.ofBytes(data);
      await store.put(digest, data);
      await fsynced.put(digest, data);
      const st = await fs.stat(fileOf(digest), { bigint: true });
      expect(st.mtimeNs % 1_000_000_000n).toBe(500_000_000n);
      expect(Number(st.mode) & 0o777).toBe(0o444);
      expect(Buffer.from(await store.get(digest)).equals(Buffer.from(data))).toBe(true);
      expect(Buffer.from(await fsynced.get(digest)).equals(Buffer.from(data))).toBe(true);
    }
    expect(await fs.readdir(path.join(dir, '.tmp'))).toEqual([]);
  });

  it('drops a same-size blob file whose bytes were changed in place (get, read and findMissing)', async () => {
    const store = await open(true);
    const data = patternBytes(3 * 1024 * 1024, 5);
    const digest = Digest.ofBytes(data);
    await store.put(digest, data);
    const other = patternBytes(data.length, 6);
    await tamper(digest, other);

    expectCode(await rejectionOf(collect(store.read(digest, { offset: 1024 * 1024, limit: 16 }))), Code.NOT_FOUND);
    expect(await store.findMissing([digest])).toEqual([digest]);
    expectCode(await rejectionOf(store.get(digest)), Code.NOT_FOUND);
    await expect(fs.stat(fileOf(digest))).rejects.toMatchObject({ code: 'ENOENT' });
    // The client uploads it again and it is served again.
    await store.put(digest, data);
    expect(Buffer.from(await store.get(digest)).equals(Buffer.from(data))).toBe(true);
  });

  it('opened without a stat per file (sizes from file names, as the CAS is), drops a file grown or changed while closed', async () => {
    const first = await open(true, true);
    const grown = bytes('grown later');
    const changed = bytes('changed later');
    const kept = bytes('kept as is');
    for (const data of [grown, changed, kept]) await first.put(Digest.ofBytes(data), data);
    await first.close();
    await tamper(Digest.ofBytes(grown), bytes('grown later, by a hostile process'));
    await tamper(Digest.ofBytes(changed), bytes('CHANGED LATER'));

    const store = await open(true, true);
    expectCode(await rejectionOf(store.get(Digest.ofBytes(grown))), Code.NOT_FOUND);
    expectCode(await rejectionOf(collect(store.read(Digest.ofBytes(changed)))), Code.NOT_FOUND);
    expect(Buffer.from(await store.get(Digest.ofBytes(kept))).toString()).toBe('kept as is');
    expect(await store.findMissing([Digest.ofBytes(grown), Digest.ofBytes(changed), Digest.ofBytes(kept)])).toEqual([Digest.ofBytes(grown), Digest.ofBytes(changed)]);
  });

  it('serves a file whose time changed but whose bytes still match, and marks it again', async () => {
    const store = await open(true);
    const data = bytes('only touched');
    const digest = Digest.ofBytes(data);
    await store.put(digest, data);
    const now = new Date();
    await fs.utimes(fileOf(digest), now, now);
    expect((await mtimeNs(digest)) % 1_000_000_000n).not.toBe(500_000_000n);
    expect(Buffer.from(await store.get(digest)).toString()).toBe('only touched');
    expect((await mtimeNs(digest)) % 1_000_000_000n).toBe(500_000_000n);
  });

  it('verifies blob files it did not write (an older store, a copy) at their first read after open', async () => {
    const first = await open(true);
    const good = bytes('kept');
    const bad = bytes('lost');
    const goodDigest = Digest.ofBytes(good);
    const badDigest = Digest.ofBytes(bad);
    await first.put(goodDigest, good);
    await first.put(badDigest, bad);
    await first.close();
    const later = new Date(Date.now() + 1500);
    await fs.utimes(fileOf(goodDigest), later, later);
    await tamper(badDigest, bytes('LOST'));

    const reopened = await open(true);
    expect(Buffer.from(await collect(reopened.read(goodDigest))).toString()).toBe('kept');
    expectCode(await rejectionOf(reopened.get(badDigest)), Code.NOT_FOUND);
  });

  it('never hashes an action cache store, whose keys are not the hashes of the files', async () => {
    const store = await open(false);
    const key = Digest.ofBytes(bytes('an action'));
    const result = bytes('a serialized ActionResult, longer than the action');
    const stored = Digest.create(key.instanceName, key.digestFunction, key.hash, result.length);
    await store.put(stored, result);
    const now = new Date();
    await fs.utimes(fileOf(stored), now, now);
    expect(Buffer.from(await store.get(stored)).toString()).toBe('a serialized ActionResult, longer than the action');
  });
});

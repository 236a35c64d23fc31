import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { FileCache } from '../../../src/lib/worker/file-cache.js';
import { newMemoryStore, putBlob, RecordingBlobStore } from './worker-test-helpers.js';

describe('FileCache', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'bzutil-filecache-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const open = (store: RecordingBlobStore, maxSizeBytes = 1 << 20) =>
    FileCache.open({ directory: path.join(dir, 'cache'), contentAddressableStorage: store, maxSizeBytes });

  it('fetches a file once and hard-links it read-only into every target', async () => {
    const store = new RecordingBlobStore(newMemoryStore());
    const digest = await putBlob(store, 'hello');
    const cache = await open(store);

    await cache.linkInto(digest, false, path.join(dir, 'a'));
    await cache.linkInto(digest, false, path.join(dir, 'b'));

    expect(store.count('read')).toBe(1);
    const cached = statSync(cache.pathOf(digest, false));
    expect(statSync(path.join(dir, 'a')).ino).toBe(cached.ino);
    expect(statSync(path.join(dir, 'b')).ino).toBe(cached.ino);
    expect(cached.mode & 0o777).toBe(0o444);
    expect(readFileSync(path.join(dir, 'b'), 'utf8')).toBe('hello');
    expect(path.basename(cache.pathOf(digest, false))).toBe(`${digest.hash}-5`);
  });

  it('keys entries by the executable bit, since it belongs to the shared inode', async () => {
    const store = new RecordingBlobStore(newMemoryStore());
    const digest = await putBlob(store, '#!/bin/sh\n');
    const cache = await open(store);

    await cache.linkInto(digest, false, path.join(dir, 'plain'));
    await cache.linkInto(digest, true, path.join(dir, 'tool'));

    expect(statSync(path.join(dir, 'plain')).mode & 0o777).toBe(0o444);
    expect(statSync(path.join(dir, 'tool')).mode & 0o777).toBe(0o555);
    expect(statSync(path.join(dir, 'plain')).ino).not.toBe(statSync(path.join(dir, 'tool')).ino);
    expect(path.basename(cache.pathOf(digest, true))).toBe(`${digest.hash}-10-x`);
  });

  it('shares one download between concurrent requests for the same file', async () => {
    const store = new RecordingBlobStore(newMemoryStore());
    const digest = await putBlob(store, 'x'.repeat(100_000));
    const cache = await open(store);

    await Promise.all(Array.from({ length: 8 }, (_, i) => cache.linkInto(digest, false, path.join(dir, `t${i}`))));

    expect(store.count('read')).toBe(1);
    for (let i = 0; i < 8; i++) expect(statSync(path.join(dir, `t${i}`)).size).toBe(100_000);
  });

  it("does not fail another caller's fetch when the first caller gives up", async () => {
    const memory = newMemoryStore();
    const digest = await putBlob(memory, 'shared');
    // Reads wait for the gate, so both callers are attached to the same download.
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    const gated = new RecordingBlobStore({
      get: (d, o) => memory.get(d, o),
      put: (d, data, o) => memory.put(d, data, o),
      findMissing: (ds, o) => memory.findMissing(ds, o),
      read: (d, o) =>
        (async function* () {
          await gate;
          yield* memory.read(d, o);
        })(),
    });
    const cache = await open(gated);
    const impatient = new AbortController();

    const first = cache.linkInto(digest, false, path.join(dir, 'first'), { signal: impatient.signal });
    const second = cache.linkInto(digest, false, path.join(dir, 'second'));
    impatient.abort();
    openGate();

    await expect(first).rejects.toThrow();
    await second;
    expect(readFileSync(path.join(dir, 'second'), 'utf8')).toBe('shared');
    expect(gated.count('read')).toBe(1);
  });

  it('evicts the least recently used entries beyond its size limit', async () => {
    const store = new RecordingBlobStore(newMemoryStore());
    const a = await putBlob(store, 'a'.repeat(40));
    const b = await putBlob(store, 'b'.repeat(40));
    const c = await putBlob(store, 'c'.repeat(40));
    const cache = await open(store, 100);

    await cache.linkInto(a, false, path.join(dir, 'a1'));
    await cache.linkInto(b, false, path.join(dir, 'b1'));
    // Touch a, so b becomes the least recently used.
    await cache.linkInto(a, false, path.join(dir, 'a2'));
    await cache.linkInto(c, false, path.join(dir, 'c1'));

    expect(cache.has(a, false)).toBe(true);
    expect(cache.has(b, false)).toBe(false);
    expect(cache.has(c, false)).toBe(true);
    expect(existsSync(cache.pathOf(b, false))).toBe(false);
    expect(cache.sizeBytes).toBe(80);
    // The evicted entry's existing link is untouched.
    expect(readFileSync(path.join(dir, 'b1'), 'utf8')).toBe('b'.repeat(40));
  });

  it('reports a blob absent from the CAS as FAILED_PRECONDITION with a MISSING violation', async () => {
    const store = new RecordingBlobStore(newMemoryStore());
    const cache = await open(store);
    const absent = Digest.ofBytes(new TextEncoder().encode('never stored'));

    const err = await cache.linkInto(absent, false, path.join(dir, 'x')).catch((e: unknown) => e);

    expect((err as StatusError).code).toBe(Code.FAILED_PRECONDITION);
    expect((err as StatusError).preconditionViolations()).toEqual([{ type: 'MISSING', subject: absent.toMissingSubject() }]);
    expect(existsSync(path.join(dir, 'x'))).toBe(false);
    expect(readdirSync(path.join(dir, 'cache', 'tmp'))).toEqual([]);
  });

  it('refuses content whose hash does not match the digest, keeping nothing', async () => {
    const store = new RecordingBlobStore(newMemoryStore());
    const real = await putBlob(store, 'genuine');
    // A store that answers every read with the bytes of `real`.
    const lying = Digest.create('', 'sha256', 'a'.repeat(64), 7);
    const liar = new RecordingBlobStore({
      ...store,
      get: (d, o) => store.get(d, o),
      put: (d, data, o) => store.put(d, data, o),
      findMissing: (ds, o) => store.findMissing(ds, o),
      read: () => store.read(real),
    });
    const cache = await open(liar);

    const err = await cache.linkInto(lying, false, path.join(dir, 'x')).catch((e: unknown) => e);

    expect((err as StatusError).code).toBe(Code.DATA_LOSS);
    expect(cache.has(lying, false)).toBe(false);
    expect(readdirSync(path.join(dir, 'cache', 'tmp'))).toEqual([]);
  });

  it('adopts the entries a previous process left and removes foreign files', async () => {
    const store = new RecordingBlobStore(newMemoryStore());
    const digest = await putBlob(store, 'kept');
    const first = await open(store);
    await first.linkInto(digest, false, path.join(dir, 'one'));
    writeFileSync(path.join(dir, 'cache', 'garbage'), 'junk');

    const second = await open(store);

    expect(second.has(digest, false)).toBe(true);
    expect(second.sizeBytes).toBe(4);
    expect(existsSync(path.join(dir, 'cache', 'garbage'))).toBe(false);
    await second.linkInto(digest, false, path.join(dir, 'two'));
    expect(store.count('read')).toBe(1);
  });

  it('creates empty files without asking the CAS', async () => {
    const store = new RecordingBlobStore(newMemoryStore());
    const cache = await open(store);

    await cache.linkInto(Digest.empty(), false, path.join(dir, 'empty'));

    expect(statSync(path.join(dir, 'empty')).size).toBe(0);
    expect(store.calls).toEqual([]);
  });
});

/**
 * A full disk cannot be arranged portably, so `open` is wrapped to hand out write handles that fail
 * like a full disk does, while everything else goes to the real filesystem. Small whole blobs are
 * written with the synchronous calls (blob-temp-file.ts), so `openSync`/`writeSync` are wrapped alike.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

const diskFull = vi.hoisted(() => ({ code: undefined as string | undefined, times: Infinity }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const open: typeof real.open = async (...args) => {
    const handle = await real.open(...args);
    if (diskFull.code && args[1] === 'wx' && diskFull.times > 0) {
      diskFull.times -= 1;
      const code = diskFull.code;
      handle.write = (async () => {
        throw Object.assign(new Error(`${code}: no space left on device, write`), { code });
      }) as typeof handle.write;
    }
    return handle;
  };
  return { ...real, open, default: { ...real, open } };
});

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const failing = new Set<number>();
  const openSync = ((...args: Parameters<typeof real.openSync>) => {
    const fd = real.openSync(...args);
    if (diskFull.code && args[1] === 'wx' && diskFull.times > 0) {
      diskFull.times -= 1;
      failing.add(fd);
    }
    return fd;
  }) as typeof real.openSync;
  const writeSync = ((fd: number, ...rest: unknown[]) => {
    if (failing.has(fd)) {
      const code = diskFull.code ?? 'ENOSPC';
      throw Object.assign(new Error(`${code}: no space left on device, write`), { code });
    }
    return (real.writeSync as (...a: unknown[]) => number)(fd, ...rest);
  }) as typeof real.writeSync;
  const closeSync = ((fd: number) => {
    failing.delete(fd);
    real.closeSync(fd);
  }) as typeof real.closeSync;
  const wrapped = { openSync, writeSync, closeSync };
  return { ...real, ...wrapped, default: { ...real, ...wrapped } };
});

const fs = await import('node:fs/promises');
const { FilesystemBlobStore } = await import('../../../src/lib/blobstore/filesystem-blob-store.js');
const { Digest } = await import('../../../src/lib/digest/digest.js');
const { Code } = await import('../../../src/lib/errors/status-error.js');
const { bytes, expectCode, rejectionOf } = await import('../../helpers/blob-store-contract.js');

describe('FilesystemBlobStore on a full disk', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    diskFull.code = undefined;
    diskFull.times = Infinity;
    for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });

  for (const code of ['ENOSPC', 'EDQUOT']) {
    it(`fails a put with RESOURCE_EXHAUSTED on ${code} and leaves no temp file`, async () => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-full-'));
      dirs.push(dir);
      const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 1 << 20 });
      diskFull.code = code;
      const data = bytes('does not fit');
      const digest = Digest.ofBytes(data);
      const err = await rejectionOf(store.put(digest, data));
      expectCode(err, Code.RESOURCE_EXHAUSTED);
      expect((err as Error).message).toBe(`Failed to store blob ${digest.toString()}: no space left on device (${code})`);
      expect(await fs.readdir(path.join(dir, '.tmp'))).toEqual([]);
      expect(await store.findMissing([digest])).toEqual([digest]);
    });
  }

  it('fails a streamed put with RESOURCE_EXHAUSTED on ENOSPC and leaves no temp file', async () => {
    // A stream takes the asynchronous path (FileHandle writes), unlike the small whole blobs above.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-full-'));
    dirs.push(dir);
    const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 1 << 20 });
    diskFull.code = 'ENOSPC';
    const data = bytes('streamed, does not fit');
    const digest = Digest.ofBytes(data);
    const err = await rejectionOf(store.put(digest, (async function* () { yield data.subarray(0, 5); yield data.subarray(5); })()));
    expectCode(err, Code.RESOURCE_EXHAUSTED);
    expect(await fs.readdir(path.join(dir, '.tmp'))).toEqual([]);
    expect(await store.findMissing([digest])).toEqual([digest]);
  });

  it('evicts the least recently used blobs on ENOSPC and retries a whole-blob put once', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-full-'));
    dirs.push(dir);
    const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 1 << 20 });
    const old = bytes('x'.repeat(2000));
    const recent = bytes('y'.repeat(2000));
    await store.put(Digest.ofBytes(old), old);
    await store.put(Digest.ofBytes(recent), recent);
    await store.get(Digest.ofBytes(recent));
    diskFull.code = 'ENOSPC';
    diskFull.times = 1;
    const data = bytes('fits after eviction');
    const digest = Digest.ofBytes(data);

    await store.put(digest, data);

    expect(new TextDecoder().decode(await store.get(digest))).toBe('fits after eviction');
    expect(await store.findMissing([Digest.ofBytes(old), Digest.ofBytes(recent)])).toEqual([Digest.ofBytes(old), Digest.ofBytes(recent)]);
  });

  it('drops a blob whose file changed size behind its back instead of serving it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-tamper-'));
    dirs.push(dir);
    const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 1 << 20 });
    const data = bytes('precious');
    const digest = Digest.ofBytes(data);
    await store.put(digest, data);
    const [file] = (await fs.readdir(dir, { recursive: true })).filter((f) => f.endsWith(`${digest.hash}-${digest.sizeBytes}`));
    await fs.chmod(path.join(dir, file!), 0o644);
    await fs.appendFile(path.join(dir, file!), 'evil');

    expectCode(await rejectionOf(store.get(digest)), Code.NOT_FOUND);
    expect(await store.findMissing([digest])).toEqual([digest]);
  });
});

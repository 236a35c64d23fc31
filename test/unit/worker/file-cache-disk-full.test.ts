/**
 * A full disk cannot be arranged portably, so `createWriteStream` is wrapped to hand out, a chosen
 * number of times, a stream that fails like a full disk does.
 */
import { Writable } from 'node:stream';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

const diskFull = vi.hoisted(() => ({ times: 0 }));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const createWriteStream = ((...args: Parameters<typeof real.createWriteStream>) => {
    if (diskFull.times > 0) {
      diskFull.times -= 1;
      return new Writable({
        write(_chunk, _encoding, callback) {
          callback(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
        },
      });
    }
    return real.createWriteStream(...args);
  }) as typeof real.createWriteStream;
  return { ...real, createWriteStream, default: { ...real, createWriteStream } };
});

const fs = await import('node:fs');
const { FileCache } = await import('../../../src/lib/worker/file-cache.js');
const { Code, StatusError } = await import('../../../src/lib/errors/status-error.js');
const { newMemoryStore, putBlob } = await import('./worker-test-helpers.js');

describe('FileCache on a full disk', () => {
  const dirs: string[] = [];
  afterEach(() => {
    diskFull.times = 0;
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  const setUp = async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bzutil-cache-full-'));
    dirs.push(dir);
    const store = newMemoryStore();
    const cache = await FileCache.open({ directory: path.join(dir, 'cache'), contentAddressableStorage: store, maxSizeBytes: 1 << 20 });
    return { dir, store, cache };
  };

  it('evicts unused entries on ENOSPC and fetches again once', async () => {
    const { dir, store, cache } = await setUp();
    const old = await putBlob(store, 'an older input');
    await cache.linkInto(old, false, path.join(dir, 'old'));
    const wanted = await putBlob(store, 'the input an action needs');
    diskFull.times = 1;

    await cache.linkInto(wanted, false, path.join(dir, 'wanted'));

    expect(diskFull.times).toBe(0);
    expect(fs.readFileSync(path.join(dir, 'wanted'), 'utf8')).toBe('the input an action needs');
    expect(cache.has(old, false)).toBe(false);
    // The evicted entry's existing link in an action directory is unaffected.
    expect(fs.readFileSync(path.join(dir, 'old'), 'utf8')).toBe('an older input');
  });

  it('answers RESOURCE_EXHAUSTED when there is nothing to evict or the retry fails too', async () => {
    const { dir, store, cache } = await setUp();
    const wanted = await putBlob(store, 'does not fit');
    diskFull.times = 2;

    const err = await cache.linkInto(wanted, false, path.join(dir, 'wanted')).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(StatusError);
    expect((err as InstanceType<typeof StatusError>).code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(cache.has(wanted, false)).toBe(false);
  });
});

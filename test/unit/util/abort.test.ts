import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { abortable } from '../../../src/lib/util/abort.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** A source that records whether it was asked to close. */
function trackedSource<T>(items: T[], hang = false): { source: AsyncIterable<T>; closed: () => boolean } {
  let closed = false;
  const source: AsyncIterable<T> = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        next: () => {
          if (i < items.length) return Promise.resolve({ value: items[i++]!, done: false });
          if (hang) return new Promise<IteratorResult<T>>(() => {});
          return Promise.resolve({ value: undefined, done: true });
        },
        return: () => {
          closed = true;
          return Promise.resolve({ value: undefined, done: true });
        },
      };
    },
  };
  return { source, closed: () => closed };
}

describe('abortable', () => {
  it('passes every item of the source through when the signal never fires', async () => {
    const { source, closed } = trackedSource([1, 2, 3]);
    const seen: number[] = [];
    for await (const n of abortable(source, new AbortController().signal)) seen.push(n);
    expect(seen).toEqual([1, 2, 3]);
    expect(closed()).toBe(false);
  });

  it('rejects a next() that waits on the source as soon as the signal fires, and closes the source', async () => {
    const { source, closed } = trackedSource([1], true);
    const controller = new AbortController();
    const it = abortable(source, controller.signal)[Symbol.asyncIterator]();
    expect(await it.next()).toEqual({ value: 1, done: false });
    const pending = it.next();
    controller.abort(new Error('stop'));
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    expect(closed()).toBe(true);
  });

  it('rejects at once when the signal fired before iteration started', async () => {
    const controller = new AbortController();
    controller.abort();
    const { source } = trackedSource([1]);
    await expect(abortable(source, controller.signal)[Symbol.asyncIterator]().next()).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('passes the source error through without closing the source', async () => {
    let closed = false;
    const source: AsyncIterable<number> = {
      [Symbol.asyncIterator]: () => ({
        next: () => Promise.reject(new Error('source broke')),
        return: () => {
          closed = true;
          return Promise.resolve({ value: undefined, done: true });
        },
      }),
    };
    await expect(abortable(source, new AbortController().signal)[Symbol.asyncIterator]().next()).rejects.toThrow('source broke');
    expect(closed).toBe(false);
  });

  it('keeps no consumed chunk reachable while the stream goes on (memory must not grow with blob size)', async () => {
    const count = 20;
    const refs: WeakRef<Uint8Array>[] = [];
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < count; i++) {
        const chunk = new Uint8Array(1024);
        refs.push(new WeakRef(chunk));
        yield chunk;
      }
    }
    const it = abortable(chunks(), new AbortController().signal)[Symbol.asyncIterator]();
    for (let i = 0; i < count; i++) expect((await it.next()).done).toBe(false);
    // WeakRefs are kept alive until the current job ends; let it end, then collect.
    await new Promise((resolve) => setTimeout(resolve, 0));
    gc();
    // The last chunk may still be held by the generator; every earlier one must be collectable.
    const alive = refs.slice(0, count - 1).filter((r) => r.deref() !== undefined).length;
    expect(alive).toBe(0);
    await it.return?.();
  });
});

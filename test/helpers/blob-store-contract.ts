/**
 * The behaviour every BlobStore promises (see src/lib/blobstore/blob-store.ts), as one vitest suite
 * that each terminal store and each decorator runs, so that they stay interchangeable.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Digest } from '../../src/lib/digest/digest.js';
import { DIGEST_FUNCTIONS } from '../../src/lib/digest/digest-function.js';
import { Code, StatusError, hasCode, isAbortError } from '../../src/lib/errors/status-error.js';
import { type BlobStore, MAX_READ_CHUNK_BYTES } from '../../src/lib/blobstore/blob-store.js';

export interface BlobStoreFixture {
  store: BlobStore;
  /** Releases what the fixture holds (servers, temp directories). */
  close?: () => Promise<void>;
}

const encoder = new TextEncoder();

export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/** A blob of `sizeBytes` pseudo-random-looking but deterministic bytes. */
export function patternBytes(sizeBytes: number, seed = 7): Uint8Array {
  const out = new Uint8Array(sizeBytes);
  let x = seed;
  for (let i = 0; i < sizeBytes; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export async function* chunksOf(...chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const c of chunks) yield c;
}

export async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of source) parts.push(c);
  return Buffer.concat(parts);
}

/** Awaits `promise` and returns what it rejected with; fails the test if it resolved. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('Expected the promise to reject, but it resolved');
}

export function expectCode(err: unknown, code: Code): void {
  expect(err).toBeInstanceOf(StatusError);
  expect((err as StatusError).codeName).toBe(Code[code]);
}

export function describeBlobStoreContract(name: string, factory: () => Promise<BlobStoreFixture>): void {
  describe(`${name} (BlobStore contract)`, () => {
    let fixture: BlobStoreFixture;
    let store: BlobStore;

    beforeEach(async () => {
      fixture = await factory();
      store = fixture.store;
    });
    afterEach(async () => {
      await fixture.close?.();
    });

    it('returns the bytes that were put', async () => {
      const data = bytes('hello, world');
      const digest = Digest.ofBytes(data);
      await store.put(digest, data);
      expect(Buffer.from(await store.get(digest)).toString()).toBe('hello, world');
    });

    it('stores a blob given as a stream of chunks', async () => {
      const data = patternBytes(100_000);
      const digest = Digest.ofBytes(data);
      await store.put(digest, chunksOf(data.subarray(0, 10), data.subarray(10, 65_536), data.subarray(65_536)));
      expect(Buffer.from(await store.get(digest)).equals(data)).toBe(true);
      expect(Buffer.from(await collect(store.read(digest))).equals(data)).toBe(true);
    });

    it('is not changed by a caller reusing its buffer after put', async () => {
      const data = bytes('original');
      const digest = Digest.ofBytes(data);
      await store.put(digest, data);
      data.fill(0);
      expect(Buffer.from(await store.get(digest)).toString()).toBe('original');
    });

    it('fails get and read of an absent blob with NOT_FOUND', async () => {
      const digest = Digest.ofBytes(bytes('never stored'));
      expectCode(await rejectionOf(store.get(digest)), Code.NOT_FOUND);
      expectCode(await rejectionOf(collect(store.read(digest))), Code.NOT_FOUND);
    });

    it('always has the empty blob of every digest function', async () => {
      for (const digestFunction of DIGEST_FUNCTIONS) {
        const empty = Digest.empty({ digestFunction, instanceName: 'some/instance' });
        expect(await store.get(empty)).toHaveLength(0);
        expect(await collect(store.read(empty))).toHaveLength(0);
        expect(await store.findMissing([empty])).toEqual([]);
      }
    });

    it('does not treat a zero-size digest with another hash as the empty blob', async () => {
      const notEmpty = Digest.create('', 'sha256', 'a'.repeat(64), 0);
      expect((await store.findMissing([notEmpty])).map((d) => d.key)).toEqual([notEmpty.key]);
      expectCode(await rejectionOf(store.get(notEmpty)), Code.NOT_FOUND);
    });

    it('reports exactly the absent digests, in argument order, each once', async () => {
      const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((s) => bytes(`blob ${s}`));
      const [da, db, dc, dd] = [a!, b!, c!, d!].map((x) => Digest.ofBytes(x));
      await store.put(db!, b!);
      await store.put(dd!, d!);
      const missing = await store.findMissing([dc!, da!, db!, dc!, dd!, Digest.empty()]);
      expect(missing.map((x) => x.toString())).toEqual([dc!.toString(), da!.toString()]);
      expect(await store.findMissing([])).toEqual([]);
    });

    it('reads a range given by offset and limit', async () => {
      const data = bytes('0123456789');
      const digest = Digest.ofBytes(data);
      await store.put(digest, data);
      const text = async (offset?: number, limit?: number) => Buffer.from(await collect(store.read(digest, { offset, limit }))).toString();
      expect(await text(2, 3)).toBe('234');
      expect(await text(7)).toBe('789');
      expect(await text(7, 100)).toBe('789');
      expect(await text(0, 0)).toBe('0123456789');
      expect(await text(10)).toBe('');
    });

    it('fails a read starting past the end with OUT_OF_RANGE', async () => {
      const data = bytes('0123456789');
      const digest = Digest.ofBytes(data);
      await store.put(digest, data);
      expectCode(await rejectionOf(collect(store.read(digest, { offset: 11 }))), Code.OUT_OF_RANGE);
      expectCode(await rejectionOf(collect(store.read(Digest.empty(), { offset: 1 }))), Code.OUT_OF_RANGE);
    });

    it(`reads large blobs in chunks of at most ${MAX_READ_CHUNK_BYTES} bytes`, async () => {
      const data = patternBytes(3 * MAX_READ_CHUNK_BYTES + 5);
      const digest = Digest.ofBytes(data);
      await store.put(digest, data);
      const sizes: number[] = [];
      const parts: Uint8Array[] = [];
      for await (const chunk of store.read(digest, { offset: 3 })) {
        sizes.push(chunk.length);
        parts.push(chunk);
      }
      expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_READ_CHUNK_BYTES);
      expect(Buffer.concat(parts).equals(Buffer.from(data.subarray(3)))).toBe(true);
    });

    it('leaves nothing visible when the source stream throws', async () => {
      const data = bytes('partial upload');
      const digest = Digest.ofBytes(data);
      const failing = (async function* () {
        yield data.subarray(0, 4);
        throw StatusError.unavailable('client went away');
      })();
      const err = await rejectionOf(store.put(digest, failing));
      expect((err as Error).message).toContain('client went away');
      expect((await store.findMissing([digest])).map((d) => d.key)).toEqual([digest.key]);
      expectCode(await rejectionOf(store.get(digest)), Code.NOT_FOUND);
    });

    it('aborts a streaming put when the signal fires, leaving nothing visible', async () => {
      const data = bytes('aborted upload');
      const digest = Digest.ofBytes(data);
      const controller = new AbortController();
      const source = (async function* () {
        yield data.subarray(0, 4);
        controller.abort();
        yield data.subarray(4);
      })();
      const err = await rejectionOf(store.put(digest, source, { signal: controller.signal }));
      expect(isAbortError(err) || hasCode(err, Code.CANCELLED)).toBe(true);
      expect((await store.findMissing([digest])).map((d) => d.key)).toEqual([digest.key]);
    });

    it('aborts a put whose source is stalled when the signal fires', async () => {
      const data = bytes('stalled upload');
      const digest = Digest.ofBytes(data);
      const controller = new AbortController();
      let release = (): void => {};
      const stalled = new Promise<void>((resolve) => (release = resolve));
      const source = (async function* () {
        yield data.subarray(0, 4);
        await stalled; // a client that never sends the rest
        yield data.subarray(4);
      })();
      const put = store.put(digest, source, { signal: controller.signal });
      setImmediate(() => controller.abort());
      const err = await rejectionOf(put);
      release();
      expect(isAbortError(err) || hasCode(err, Code.CANCELLED)).toBe(true);
      expect((await store.findMissing([digest])).map((d) => d.key)).toEqual([digest.key]);
    });

    it('rejects calls made with an already-aborted signal', async () => {
      const data = bytes('stored');
      const digest = Digest.ofBytes(data);
      await store.put(digest, data);
      const signal = AbortSignal.abort();
      for (const call of [store.get(digest, { signal }), collect(store.read(digest, { signal })), store.put(digest, data, { signal })]) {
        const err = await rejectionOf(call);
        expect(isAbortError(err) || hasCode(err, Code.CANCELLED)).toBe(true);
      }
    });

    it('keeps instance names apart', async () => {
      const data = bytes('instance scoped');
      const inA = Digest.ofBytes(data, { instanceName: 'team/a' });
      const inB = inA.withInstanceName('team/b');
      const inDefault = inA.withInstanceName('');
      await store.put(inA, data);
      expect(await store.findMissing([inA, inB, inDefault])).toEqual([inB, inDefault]);
      expectCode(await rejectionOf(store.get(inB)), Code.NOT_FOUND);
      expect(Buffer.from(await store.get(inA)).toString()).toBe('instance scoped');
    });

    it('keeps a blob readable after it is put twice', async () => {
      const data = bytes('twice');
      const digest = Digest.ofBytes(data);
      await store.put(digest, data);
      await store.put(digest, chunksOf(data));
      expect(Buffer.from(await store.get(digest)).toString()).toBe('twice');
      expect(await store.findMissing([digest])).toEqual([]);
    });
  });
}

/** A call a RecordingBlobStore saw: the verb and the digests it was about. */
export interface RecordedCall {
  verb: 'get' | 'read' | 'put' | 'findMissing';
  digests: string[];
}

/**
 * Forwards to `base` and records every call, for "was the backend asked?" assertions. A spy over a
 * real store rather than a mock, so the answers stay true.
 */
export class RecordingBlobStore implements BlobStore {
  readonly calls: RecordedCall[] = [];
  constructor(private readonly base: BlobStore) {}

  get(digest: Digest, opts?: Parameters<BlobStore['get']>[1]): Promise<Uint8Array> {
    this.calls.push({ verb: 'get', digests: [digest.toString()] });
    return this.base.get(digest, opts);
  }
  read(digest: Digest, opts?: Parameters<BlobStore['read']>[1]): AsyncIterable<Uint8Array> {
    this.calls.push({ verb: 'read', digests: [digest.toString()] });
    return this.base.read(digest, opts);
  }
  put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: Parameters<BlobStore['put']>[2]): Promise<void> {
    this.calls.push({ verb: 'put', digests: [digest.toString()] });
    return this.base.put(digest, data, opts);
  }
  findMissing(digests: readonly Digest[], opts?: Parameters<BlobStore['findMissing']>[1]): Promise<Digest[]> {
    this.calls.push({ verb: 'findMissing', digests: digests.map((d) => d.toString()) });
    return this.base.findMissing(digests, opts);
  }
  /** Returns the calls recorded so far and forgets them. */
  take(): RecordedCall[] {
    return this.calls.splice(0);
  }
}

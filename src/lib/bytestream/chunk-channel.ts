/**
 * The bridge between ByteStream Write calls (which come and go) and the one streaming `put()` of a
 * resumable upload.
 */
import { StatusError } from '../errors/status-error.js';

/**
 * An async iterable fed by `push()`: the bridge between Write streams (which come and go) and the
 * one `put()` that consumes the upload. `push()` resolves once the consumer has taken the chunk,
 * which carries the store's backpressure to the gRPC stream.
 */
export class ChunkChannel implements AsyncIterable<Uint8Array> {
  private readonly queue: { chunk: Uint8Array; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private waiter?: { resolve: (r: IteratorResult<Uint8Array>) => void; reject: (err: unknown) => void };
  private ended = false;
  private error: unknown;
  private failed = false;

  push(chunk: Uint8Array): Promise<void> {
    if (this.failed) return Promise.reject(this.error);
    if (this.ended) return Promise.reject(StatusError.internal('Chunk pushed after the end of the upload'));
    return new Promise((resolve, reject) => {
      const waiter = this.waiter;
      if (waiter) {
        this.waiter = undefined;
        waiter.resolve({ value: chunk, done: false });
        resolve();
      } else {
        this.queue.push({ chunk, resolve, reject });
      }
    });
  }

  end(): void {
    this.ended = true;
    if (this.waiter && this.queue.length === 0) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.resolve({ value: undefined, done: true });
    }
  }

  /** Fails the consumer's next read and every queued or future push. */
  abort(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.error = err;
    for (const item of this.queue.splice(0)) item.reject(err);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(err);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        if (this.failed) return Promise.reject(this.error);
        const item = this.queue.shift();
        if (item) {
          item.resolve();
          return Promise.resolve({ value: item.chunk, done: false });
        }
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiter = { resolve, reject };
        });
      },
      return: () => {
        // The consumer stopped early (the store failed): producers must not wait forever.
        this.abort(StatusError.aborted('The store stopped reading the upload'));
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}


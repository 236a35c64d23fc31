/**
 * AbortSignal plumbing shared by the stores: a cancelled call must stop promptly and leave nothing
 * half-stored, even when it is waiting on a slow client for the next chunk.
 */

/** The AbortError for `signal`: its reason if that already is one, else a fresh one carrying the reason. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const err = new Error('The operation was aborted', { cause: reason });
  err.name = 'AbortError';
  return err;
}

/** Throws an AbortError if `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/** The chunks of a blob given whole or as a stream. */
export function toChunks(data: Uint8Array | AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  if (!(data instanceof Uint8Array)) return data;
  return (async function* () {
    yield data;
  })();
}

/**
 * Iterates `source` but rejects with an AbortError as soon as `signal` fires, even while the source
 * is still waiting for its next chunk, and then asks the source to close.
 *
 * Written as a plain iterator with one abort listener per iteration rather than racing every step
 * against a long-lived "aborted" promise: each `Promise.race` leaves a reaction on a promise that
 * never settles, and those reactions kept every chunk of an upload reachable until it ended, so a
 * streaming put's memory grew with the blob's size.
 */
export function abortable<T>(source: AsyncIterable<T>, signal: AbortSignal | undefined): AsyncIterable<T> {
  if (!signal) return source;
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      let iterator: AsyncIterator<T> | undefined;
      let finished = false;
      /** Rejects the `next()` in progress, if any. */
      let rejectPending: ((err: unknown) => void) | undefined;
      const onAbort = (): void => {
        const reject = rejectPending;
        rejectPending = undefined;
        finish(true);
        reject?.(abortError(signal));
      };
      /** Stops listening; asks the source to close unless it ended or failed by itself. */
      const finish = (closeSource: boolean): void => {
        if (finished) return;
        finished = true;
        signal.removeEventListener('abort', onAbort);
        // Not awaited: a source stuck in next() would otherwise hold the caller hostage.
        if (closeSource) iterator?.return?.()?.catch(() => {});
      };
      return {
        next: (): Promise<IteratorResult<T>> => {
          if (signal.aborted) {
            finish(true);
            return Promise.reject(abortError(signal));
          }
          if (finished) return Promise.resolve({ value: undefined, done: true });
          if (!iterator) {
            iterator = source[Symbol.asyncIterator]();
            signal.addEventListener('abort', onAbort, { once: true });
          }
          const current = iterator;
          return new Promise<IteratorResult<T>>((resolve, reject) => {
            rejectPending = reject;
            current.next().then(
              (step) => {
                if (rejectPending !== reject) return; // aborted meanwhile: already rejected
                rejectPending = undefined;
                if (step.done) finish(false);
                resolve(step);
              },
              (err: unknown) => {
                if (rejectPending !== reject) return;
                rejectPending = undefined;
                finish(false);
                reject(err);
              },
            );
          });
        },
        return: (): Promise<IteratorResult<T>> => {
          finish(true);
          return Promise.resolve({ value: undefined, done: true });
        },
      };
    },
  };
}

/** Waits for `promise`, but rejects with an AbortError as soon as `signal` fires (the work itself goes on). */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

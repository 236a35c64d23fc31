/**
 * Bounded concurrency for fan-out work (hashing files, batch RPCs, downloads): a whole tree or a
 * large digest list must never start thousands of file handles or calls at once.
 */

/**
 * Runs `fn` on every item with at most `limit` calls in flight and resolves to the results in input
 * order: the one bounded-concurrency helper of bzutil. The first failure stops new items from
 * starting and is thrown once the calls already running have settled, so that nothing keeps
 * touching files or connections after the caller has seen the error (a worker then removes the
 * action directory safely).
 */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const workerCount = Math.max(1, Math.min(Math.floor(limit) || 1, items.length));
  const worker = async () => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index]!, index);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: workerCount }, worker));
  const rejected = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
  return results;
}

/**
 * A semaphore: `run(fn)` waits for one of `limit` slots. Use it when work is discovered while
 * running (a directory walk), so that `mapConcurrent` cannot see the whole list up front.
 * Never nest `run` calls on one limiter: an outer slot waiting for inner slots can deadlock.
 */
export function createLimiter(limit: number): <R>(fn: () => Promise<R>) => Promise<R> {
  let active = 0;
  const waiting: (() => void)[] = [];
  const max = Math.max(1, Math.floor(limit) || 1);
  return async <R>(fn: () => Promise<R>): Promise<R> => {
    // A finishing call hands its slot straight to the first waiter, so `active` never overshoots.
    if (active >= max) await new Promise<void>((resolve) => waiting.push(resolve));
    else active++;
    try {
      return await fn();
    } finally {
      const wake = waiting.shift();
      if (wake) wake();
      else active--;
    }
  };
}

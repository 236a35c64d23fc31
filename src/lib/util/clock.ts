/**
 * Time as a dependency, so that schedulers, caches and retries can be tested with a fake clock
 * instead of sleeping on the wall clock.
 */
import { abortError } from './abort.js';

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Resolves after `ms` milliseconds; rejects with an AbortError if `signal` fires first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortError(signal));
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(abortError(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};


/**
 * A clock that only moves when told to: `advance(ms)` fires every sleeper whose deadline has come,
 * in deadline order. For tests.
 */
export class FakeClock implements Clock {
  private sleepers: { until: number; resolve: () => void }[] = [];
  constructor(private current = 0) {}

  now(): number {
    return this.current;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortError(signal));
      const entry = { until: this.current + ms, resolve };
      this.sleepers.push(entry);
      signal?.addEventListener(
        'abort',
        () => {
          this.sleepers = this.sleepers.filter((s) => s !== entry);
          reject(abortError(signal));
        },
        { once: true },
      );
    });
  }

  /** Moves time forward and wakes the sleepers that are due; awaits a microtask turn after each. */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      this.sleepers.sort((a, b) => a.until - b.until);
      const next = this.sleepers[0];
      if (!next || next.until > target) break;
      this.sleepers.shift();
      this.current = next.until;
      next.resolve();
      await new Promise((r) => setImmediate(r));
    }
    this.current = target;
  }

  /** How many sleepers are waiting. */
  get pendingSleeps(): number {
    return this.sleepers.length;
  }
}

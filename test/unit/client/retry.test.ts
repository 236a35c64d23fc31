import { describe, expect, it } from 'vitest';
import { backoffMs, pauseBeforeRetry, resolveRetryOptions, withRetry } from '../../../src/lib/client/retry.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { createLimiter, mapConcurrent } from '../../../src/lib/util/concurrency.js';

describe('withRetry', () => {
  it('retries UNAVAILABLE after the backoff, and only after it', async () => {
    const clock = new FakeClock();
    const opts = resolveRetryOptions({ clock, random: () => 0.5, initialBackoffMs: 100 });
    let attempts = 0;
    const result = withRetry(opts, async () => {
      attempts++;
      if (attempts < 3) throw StatusError.unavailable('server restarting');
      return 'ok';
    });
    // First failure, then a 50 ms sleep (half of 100 ms with random 0.5).
    await new Promise((r) => setImmediate(r));
    expect(attempts).toBe(1);
    await clock.advance(49);
    expect(attempts).toBe(1);
    await clock.advance(1);
    expect(attempts).toBe(2);
    // Second backoff: half of 200 ms.
    await clock.advance(100);
    expect(await result).toBe('ok');
    expect(attempts).toBe(3);
  });

  it('does not retry codes outside the retryable set', async () => {
    const opts = resolveRetryOptions({ clock: new FakeClock() });
    let attempts = 0;
    const err = await withRetry(opts, async () => {
      attempts++;
      throw StatusError.notFound('absent');
    }).catch((e) => e);
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(attempts).toBe(1);
  });

  it('caps each backoff at maxBackoffMs', () => {
    const opts = resolveRetryOptions({ random: () => 0.999999, initialBackoffMs: 100, maxBackoffMs: 1000 });
    expect([1, 2, 3, 4, 5, 10].map((n) => backoffMs(opts, n))).toEqual([99, 199, 399, 799, 999, 999]);
  });

  it('rejects nonsensical options early', () => {
    expect(() => resolveRetryOptions({ maxAttempts: 0 })).toThrow(TypeError);
  });
});

describe('pauseBeforeRetry', () => {
  it('says no (without waiting) for a non-retryable error, the last attempt, or an aborted call', async () => {
    const opts = resolveRetryOptions({ clock: new FakeClock(), maxAttempts: 3 });
    expect(await pauseBeforeRetry(opts, 1, StatusError.invalidArgument('bad'))).toBe(false);
    expect(await pauseBeforeRetry(opts, 3, StatusError.unavailable('down'))).toBe(false);
    const aborted = new AbortController();
    aborted.abort();
    expect(await pauseBeforeRetry(opts, 1, StatusError.unavailable('down'), aborted.signal)).toBe(false);
  });

  it('waits the backoff before saying yes, and turns an abort during the wait into CANCELLED', async () => {
    const clock = new FakeClock();
    const opts = resolveRetryOptions({ clock, random: () => 0.5, initialBackoffMs: 100 });
    let answered: boolean | undefined;
    void pauseBeforeRetry(opts, 1, StatusError.unavailable('down')).then((v) => (answered = v));
    await clock.advance(49);
    expect(answered).toBeUndefined();
    await clock.advance(1);
    expect(answered).toBe(true);

    const stop = new AbortController();
    const waiting = pauseBeforeRetry(opts, 1, StatusError.unavailable('down'), stop.signal);
    stop.abort();
    await expect(waiting).rejects.toMatchObject({ code: Code.CANCELLED });
  });
});

describe('mapConcurrent and createLimiter', () => {
  it('never runs more than the limit at once and keeps result order', async () => {
    let active = 0;
    let peak = 0;
    const results = await mapConcurrent([5, 1, 4, 2, 3, 0], 2, async (n) => {
      active++;
      peak = Math.max(peak, active);
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
      active--;
      return n * 10;
    });
    expect(results).toEqual([50, 10, 40, 20, 30, 0]);
    expect(peak).toBe(2);
  });

  it('throws the first failure only after the calls already running have settled, and starts no more', async () => {
    const started: number[] = [];
    let running = 0;
    const err = await mapConcurrent([0, 1, 2, 3, 4], 2, async (n) => {
      started.push(n);
      running++;
      try {
        if (n === 0) throw new Error('first fails');
        for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
      } finally {
        running--;
      }
    }).catch((e: Error) => e);
    expect((err as Error).message).toBe('first fails');
    expect(running).toBe(0);
    expect(started).toEqual([0, 1]);
  });

  it('hands a finished slot to a waiter without letting a newcomer overtake the limit', async () => {
    const limit = createLimiter(1);
    let active = 0;
    let peak = 0;
    const task = async () => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setImmediate(r));
      active--;
    };
    await Promise.all(Array.from({ length: 10 }, () => limit(task)));
    expect(peak).toBe(1);
  });
});

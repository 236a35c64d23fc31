/**
 * Retries for idempotent remote calls. A CAS or scheduler restarting, a load balancer dropping a
 * connection or a momentary overload must not fail a whole upload, but a retry loop must also never
 * spin forever or hammer a server that is down: attempts are bounded and spaced by exponential
 * backoff with full jitter (the gRPC connection-backoff recipe).
 */
import { Code, StatusError, isAbortError, toStatusError } from '../errors/status-error.js';
import { type Clock, systemClock } from '../util/clock.js';

export interface RetryOptions {
  /** Total attempts including the first. @default 5 */
  maxAttempts?: number;
  /** Backoff before the first retry. @default 100 */
  initialBackoffMs?: number;
  /** Upper bound for one backoff. @default 5000 */
  maxBackoffMs?: number;
  /** Growth factor between backoffs. @default 2 */
  multiplier?: number;
  /** Codes worth retrying. @default UNAVAILABLE and DEADLINE_EXCEEDED */
  retryableCodes?: readonly Code[];
  /** Source of time for the backoff sleeps (tests pass a FakeClock). @default systemClock */
  clock?: Clock;
  /** Source of randomness in [0, 1) for jitter. @default Math.random */
  random?: () => number;
}

export type ResolvedRetryOptions = Required<RetryOptions>;

export const DEFAULT_RETRYABLE_CODES: readonly Code[] = [Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED];

/** Fills in the defaults of `opts`. Rejects nonsensical values early with a TypeError. */
export function resolveRetryOptions(opts: RetryOptions = {}): ResolvedRetryOptions {
  const resolved: ResolvedRetryOptions = {
    maxAttempts: opts.maxAttempts ?? 5,
    initialBackoffMs: opts.initialBackoffMs ?? 100,
    maxBackoffMs: opts.maxBackoffMs ?? 5_000,
    multiplier: opts.multiplier ?? 2,
    retryableCodes: opts.retryableCodes ?? DEFAULT_RETRYABLE_CODES,
    clock: opts.clock ?? systemClock,
    random: opts.random ?? Math.random,
  };
  if (!Number.isInteger(resolved.maxAttempts) || resolved.maxAttempts < 1) throw new TypeError(`retry.maxAttempts must be a positive integer, got ${resolved.maxAttempts}`);
  if (resolved.initialBackoffMs < 0 || resolved.maxBackoffMs < resolved.initialBackoffMs) throw new TypeError('retry backoffs must satisfy 0 <= initialBackoffMs <= maxBackoffMs');
  return resolved;
}

/** The backoff before retry number `retry` (1-based): uniform in [0, min(max, initial * multiplier^(retry-1))]. */
export function backoffMs(opts: ResolvedRetryOptions, retry: number): number {
  const ceiling = Math.min(opts.maxBackoffMs, opts.initialBackoffMs * Math.pow(opts.multiplier, retry - 1));
  return Math.floor(opts.random() * ceiling);
}

/** True when `err` is a StatusError whose code `opts` retries. */
export function isRetryable(opts: ResolvedRetryOptions, err: unknown): boolean {
  return err instanceof StatusError && opts.retryableCodes.includes(err.code);
}

/**
 * The retry policy, in one place: given the error of attempt number `attempt` (1-based), resolves
 * to false when it is not worth retrying (not retryable, attempts used up, or `signal` aborted; the
 * caller then throws it, wrapped with its step), and otherwise waits the backoff and resolves to
 * true. Loops that resume where they stopped (ByteStream reads and writes, GetTree pages) keep their
 * own position and call this from their catch; plain calls use `withRetry`.
 */
export async function pauseBeforeRetry(opts: ResolvedRetryOptions, attempt: number, err: unknown, signal?: AbortSignal): Promise<boolean> {
  if (attempt >= opts.maxAttempts || !isRetryable(opts, err) || signal?.aborted) return false;
  try {
    await opts.clock.sleep(backoffMs(opts, attempt), signal);
  } catch (sleepErr) {
    if (isAbortError(sleepErr)) throw StatusError.cancelled('The call was cancelled while waiting to retry');
    throw toStatusError(sleepErr);
  }
  return true;
}

/**
 * Runs `fn` until it succeeds, fails with a non-retryable error, or `maxAttempts` is reached; the
 * last error is rethrown as is. `fn` receives the 1-based attempt number. Aborting `signal` stops
 * the backoff sleep and rethrows CANCELLED.
 */
export async function withRetry<T>(
  opts: ResolvedRetryOptions,
  fn: (attempt: number) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (!(await pauseBeforeRetry(opts, attempt, err, signal))) throw err;
    }
  }
}

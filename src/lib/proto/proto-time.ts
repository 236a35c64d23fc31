/**
 * The one home of conversions between milliseconds (how bzutil keeps time, see Clock) and the
 * google.protobuf Duration and Timestamp messages (Action.timeout, task timeouts, Synchronize waits
 * and leases, ExecutedActionMetadata timestamps).
 *
 * Rounding, chosen once:
 * - Duration -> ms rounds sub-millisecond nanos UP: a timeout of 1 ns must not become 0 ("none").
 * - ms -> Duration/Timestamp keeps sub-millisecond precision (ms may be fractional) by rounding to
 *   the nearest nanosecond, and carries into seconds so that nanos stays within [0, 1e9).
 * - Timestamp -> ms is exact to the microsecond a double holds for epoch times.
 */
import type { protobuf } from './index.js';

/** Milliseconds in a Duration; absent means 0. Sub-millisecond nanos are rounded up, so 1 ns is not 0. */
export function durationToMs(d: protobuf.IDuration | null | undefined): number {
  if (!d) return 0;
  return Number(d.seconds ?? 0) * 1000 + Math.ceil(Number(d.nanos ?? 0) / 1e6);
}

/** A Duration of `ms` milliseconds (fractions kept to the nanosecond; negative values go to -seconds, +nanos). */
export function msToDuration(ms: number): protobuf.IDuration {
  let seconds = Math.floor(ms / 1000);
  let nanos = Math.round((ms - seconds * 1000) * 1e6);
  if (nanos >= 1e9) {
    seconds += 1;
    nanos -= 1e9;
  }
  return { seconds, nanos };
}

/** The Timestamp of epoch milliseconds `ms`. */
export function msToTimestamp(ms: number): protobuf.ITimestamp {
  return msToDuration(ms);
}

/** Epoch milliseconds of a Timestamp; undefined when it is absent or all zero (unset). */
export function timestampToMs(t: protobuf.ITimestamp | null | undefined): number | undefined {
  if (!t) return undefined;
  const seconds = Number(t.seconds ?? 0);
  const nanos = t.nanos ?? 0;
  if (seconds === 0 && nanos === 0) return undefined;
  return seconds * 1000 + nanos / 1e6;
}

/**
 * Conversions between milliseconds (how bzutil keeps time, see Clock) and the google.protobuf
 * Duration and Timestamp messages the scheduler reads from Actions and writes into tasks and
 * ExecutedActionMetadata.
 */
import type { protobuf } from '../proto/index.js';

/** Milliseconds in a Duration; absent means 0. Sub-millisecond nanos are rounded up, so 1 ns is not 0. */
export function durationToMs(d: protobuf.IDuration | null | undefined): number {
  if (!d) return 0;
  return Number(d.seconds ?? 0) * 1000 + Math.ceil(Number(d.nanos ?? 0) / 1e6);
}

/** A Duration of `ms` milliseconds. */
export function msToDuration(ms: number): protobuf.IDuration {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** The Timestamp of epoch milliseconds `ms`. */
export function msToTimestamp(ms: number): protobuf.ITimestamp {
  return msToDuration(ms);
}

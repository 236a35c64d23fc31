import { describe, expect, it } from 'vitest';
import { durationToMs, msToDuration, msToTimestamp, timestampToMs } from '../../../src/lib/proto/proto-time.js';

describe('proto-time', () => {
  it('rounds sub-millisecond Duration nanos up, so a tiny timeout is not "none"', () => {
    expect(durationToMs(undefined)).toBe(0);
    expect(durationToMs({ seconds: 0, nanos: 1 })).toBe(1);
    expect(durationToMs({ seconds: 2, nanos: 500_000_000 })).toBe(2500);
    expect(durationToMs({ seconds: '3' as unknown as number, nanos: 1_000_001 })).toBe(3002);
  });

  it('keeps fractional milliseconds to the nanosecond and never yields nanos of 1e9', () => {
    expect(msToDuration(1500)).toEqual({ seconds: 1, nanos: 500_000_000 });
    expect(msToDuration(0.25)).toEqual({ seconds: 0, nanos: 250_000 });
    expect(msToDuration(1999.9999999999)).toEqual({ seconds: 2, nanos: 0 });
    expect(msToDuration(-1)).toEqual({ seconds: -1, nanos: 999_000_000 });
  });

  it('round-trips epoch timestamps and treats an all-zero Timestamp as unset', () => {
    const ms = 1_700_000_000_123;
    expect(msToTimestamp(ms)).toEqual({ seconds: 1_700_000_000, nanos: 123_000_000 });
    expect(timestampToMs(msToTimestamp(ms))).toBe(ms);
    expect(timestampToMs({ seconds: 0, nanos: 0 })).toBeUndefined();
    expect(timestampToMs(null)).toBeUndefined();
  });
});

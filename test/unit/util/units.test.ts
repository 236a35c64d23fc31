import { describe, expect, it } from 'vitest';
import { formatDurationMs, formatSizeBytes, parseDurationMs, parseSizeBytes } from '../../../src/lib/util/units.js';

describe('units', () => {
  it('formats sizes in the largest exact binary unit, and reads them back', () => {
    expect(formatSizeBytes(10 * 1024 ** 3)).toBe('10GiB');
    expect(formatSizeBytes(640 * 1024 ** 2)).toBe('640MiB');
    expect(formatSizeBytes(1536)).toBe('1536B');
    expect(formatSizeBytes(0)).toBe('0B');
    for (const n of [1, 1023, 1024, 1536, 64 * 1024 ** 2, 3 * 1024 ** 4]) expect(parseSizeBytes(formatSizeBytes(n))).toBe(n);
  });

  it('takes numbers as bytes and keeps the same bounds as text', () => {
    expect(parseSizeBytes(4096)).toBe(4096);
    expect(() => parseSizeBytes(0)).toThrow(/must be positive/);
    expect(parseSizeBytes(0, { allowZero: true })).toBe(0);
    expect(() => parseSizeBytes(-1, { allowZero: true })).toThrow(/non-negative/);
    expect(() => parseSizeBytes(Number.MAX_SAFE_INTEGER * 2)).toThrow(/Invalid size/);
    expect(() => parseSizeBytes('99999999P')).toThrow(/Invalid size/);
  });

  it('formats durations in the largest exact unit, and reads them back', () => {
    expect(formatDurationMs(30_000)).toBe('30s');
    expect(formatDurationMs(60_000)).toBe('1m');
    expect(formatDurationMs(1500)).toBe('1500ms');
    expect(formatDurationMs(7_200_000)).toBe('2h');
    for (const n of [1, 999, 1000, 90_000, 3_600_000]) expect(parseDurationMs(formatDurationMs(n))).toBe(n);
  });

  it('refuses negative durations and text ms() cannot read', () => {
    expect(() => parseDurationMs('-5s')).toThrow(/must be positive/);
    expect(() => parseDurationMs('x'.repeat(200))).toThrow(/Invalid duration/);
    expect(parseDurationMs('0s', { allowZero: true })).toBe(0);
  });
});

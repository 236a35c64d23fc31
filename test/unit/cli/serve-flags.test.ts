import { describe, expect, it } from 'vitest';
import { parseDurationMs, parseSizeBytes } from '../../../src/lib/cli/serve-flags.js';

describe('parseSizeBytes', () => {
  it('reads plain bytes and binary units in any case', () => {
    expect(parseSizeBytes('4096')).toBe(4096);
    expect(parseSizeBytes('64M')).toBe(64 * 1024 * 1024);
    expect(parseSizeBytes('1.5GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseSizeBytes(' 10g ')).toBe(10 * 1024 ** 3);
    expect(parseSizeBytes('2T')).toBe(2 * 1024 ** 4);
  });

  it('refuses zero unless allowed, and anything that is not a size', () => {
    expect(() => parseSizeBytes('0')).toThrow(/must be positive/);
    expect(parseSizeBytes('0', { allowZero: true })).toBe(0);
    expect(parseSizeBytes('0M', { allowZero: true })).toBe(0);
    for (const bad of ['', 'abc', '-1G', '10X', '1e3']) expect(() => parseSizeBytes(bad, { allowZero: true })).toThrow(/Invalid size/);
  });
});

describe('parseDurationMs', () => {
  it('reads ms, s, m and h, and bare numbers as seconds', () => {
    expect(parseDurationMs('500ms')).toBe(500);
    expect(parseDurationMs('30s')).toBe(30_000);
    expect(parseDurationMs('2')).toBe(2_000);
    expect(parseDurationMs('5m')).toBe(300_000);
    expect(parseDurationMs('1h')).toBe(3_600_000);
  });

  it('refuses zero and malformed durations', () => {
    expect(() => parseDurationMs('0s')).toThrow(/must be positive/);
    expect(() => parseDurationMs('soon')).toThrow(/Invalid duration/);
  });
});

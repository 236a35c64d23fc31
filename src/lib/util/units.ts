/**
 * The one place where sizes and durations written by people (flags, config files) become numbers,
 * and back. Parsing is done by `bytes` and `ms`; this module only fixes the spellings we accept on
 * top of theirs (binary units written as `G`/`GiB`, a bare duration meaning seconds) and the
 * bounds, so that a flag and a config key that mean the same thing accept the same text.
 */
import bytes from 'bytes';
import ms from 'ms';

/** Accepted sizes: plain bytes, or a number with K, M, G, T or P, optionally followed by `i` and/or `B`. */
const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])i?b?|(b))?\s*$/i;

/** Parses sizes like `512M`, `10G`, `1.5GiB`, `64MB` or plain bytes (units are binary: 1K = 1024). */
export function parseSizeBytes(text: string | number, opts: { allowZero?: boolean } = {}): number {
  const m = typeof text === 'number' ? null : SIZE_PATTERN.exec(text);
  const parsed = typeof text === 'number' ? text : m ? bytes.parse(`${m[1]}${m[2] ? `${m[2]}b` : 'b'}`) : null;
  if (parsed === null || !Number.isFinite(parsed)) {
    throw new RangeError(`Invalid size ${JSON.stringify(text)}: use bytes or a number with K, M, G or T (e.g. 10G)`);
  }
  const sizeBytes = Math.floor(parsed);
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || (sizeBytes === 0 && !opts.allowZero)) {
    throw new RangeError(`Invalid size ${JSON.stringify(text)}: must be ${opts.allowZero ? 'non-negative' : 'positive'}`);
  }
  return sizeBytes;
}

/** Formats a size the way parseSizeBytes reads it back exactly, e.g. `10GiB`, `640MiB`, `1536B`. */
export function formatSizeBytes(sizeBytes: number): string {
  const units = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'];
  let unit = 0;
  let value = sizeBytes;
  while (unit < units.length - 1 && value >= 1024 && value % 1024 === 0) {
    value /= 1024;
    unit++;
  }
  return `${value}${units[unit]}B`;
}

/** Parses durations like `500ms`, `30s`, `5m` or `1h` (a bare number is seconds). */
export function parseDurationMs(text: string | number, opts: { allowZero?: boolean } = {}): number {
  const spelled = typeof text === 'number' || /^\s*\d+(?:\.\d+)?\s*$/.test(text) ? `${String(text).trim()}s` : text;
  // ms() throws on strings over 100 characters and returns undefined on anything it cannot read.
  const parsed = spelled.length <= 100 ? (ms(spelled as ms.StringValue) as number | undefined) : undefined;
  if (parsed === undefined || !Number.isFinite(parsed)) {
    throw new RangeError(`Invalid duration ${JSON.stringify(text)}: use a number with ms, s, m or h (e.g. 30s)`);
  }
  const durationMs = Math.round(parsed);
  if (!Number.isSafeInteger(durationMs) || durationMs < 0 || (durationMs === 0 && !opts.allowZero)) {
    throw new RangeError(`Invalid duration ${JSON.stringify(text)}: must be ${opts.allowZero ? 'non-negative' : 'positive'}`);
  }
  return durationMs;
}

/** Formats a duration the way parseDurationMs reads it back exactly, e.g. `30s`, `5m`, `1500ms`. */
export function formatDurationMs(durationMs: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (durationMs >= size && durationMs % size === 0) return `${durationMs / size}${unit}`;
  }
  return `${durationMs}ms`;
}

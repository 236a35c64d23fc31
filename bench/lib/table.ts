/** The human-readable results table printed on stdout. */
import type { BenchmarkRow } from './types.js';

const COLUMNS = ['id', 'what', 'value', 'unit', 'baseline', 'ratio', 'target', 'met'] as const;
const MAX_WHAT_CHARS = 70;

export function formatTable(rows: readonly BenchmarkRow[]): string {
  const cells = rows.map((r) => [
    r.id,
    r.what.length > MAX_WHAT_CHARS ? `${r.what.slice(0, MAX_WHAT_CHARS - 1)}…` : r.what,
    r.value === null ? 'ERROR' : formatNumber(r.value),
    r.unit,
    r.baseline === null ? '-' : formatNumber(r.baseline),
    r.ratio === null ? '-' : `${r.ratio.toFixed(2)}x`,
    r.target,
    r.met === null ? '-' : r.met ? 'yes' : 'NO',
  ]);
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: readonly string[]) =>
    values.map((v, i) => (i === 2 || i === 4 || i === 5 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [line(COLUMNS), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)];
  const errors = rows.filter((r) => r.error);
  if (errors.length) out.push('', ...errors.map((r) => `${r.id}: ${r.error}`));
  return out.join('\n');
}

function formatNumber(value: number): string {
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/**
 * Building result rows: the median of the repetitions, its ratio to the same-run baseline, and
 * whether the target is met. Ratios are always value / baseline, in the row's unit: for throughput
 * higher is better, for latency and memory lower is better, and the target says which.
 */
import type { BenchmarkRow } from './types.js';
import { median, round } from './stats.js';

export interface RowSpec {
  id: string;
  what: string;
  unit: string;
  /** Values of the repetitions; the row reports their median. */
  samples: readonly number[];
  baseline?: number;
  /** Leave the ratio empty, e.g. when the target is a difference and the baseline may be near 0. */
  noRatio?: boolean;
  target?: string;
  /** Decides `met` from the median and the ratio; omit for rows that are only reported. */
  meets?: (value: number, ratio: number | null) => boolean;
  details?: Record<string, unknown>;
}

export function row(spec: RowSpec): BenchmarkRow {
  const value = median(spec.samples);
  const baseline = spec.baseline ?? null;
  const ratio = baseline && !spec.noRatio ? value / baseline : null;
  return {
    id: spec.id,
    what: spec.what,
    value: round(value),
    unit: spec.unit,
    baseline: baseline === null ? null : round(baseline),
    ratio: ratio === null ? null : round(ratio, 3),
    target: spec.target ?? 'reported',
    met: spec.meets ? spec.meets(value, ratio) : null,
    details: { samples: spec.samples.map((s) => round(s)), ...spec.details },
  };
}

/** A row for a benchmark that could not produce a value. */
export function failedRow(id: string, what: string, unit: string, target: string, err: unknown): BenchmarkRow {
  const message = err instanceof Error ? err.message : String(err);
  return { id, what, value: null, unit, baseline: null, ratio: null, target, met: target === 'reported' ? null : false, error: message };
}

/** Runs `fn`; on failure returns a failed row per id in `ids` so that the table still shows them. */
export async function rowsOrFailure(
  ids: readonly { id: string; what: string; unit: string; target: string }[],
  log: (message: string) => void,
  fn: () => Promise<BenchmarkRow[]>,
): Promise<BenchmarkRow[]> {
  try {
    return await fn();
  } catch (err) {
    log(`FAILED ${ids.map((i) => i.id).join(', ')}: ${err instanceof Error ? err.message : String(err)}`);
    return ids.map((i) => failedRow(i.id, i.what, i.unit, i.target, err));
  }
}

/**
 * Where the time of a remote build goes, so a B1 ratio above target points at a cause instead of
 * only at a number. Two views of the same build:
 * - the server's: the ExecutedActionMetadata timestamps every finished Operation carries (queue,
 *   input fetch, execution, output upload, and the worker's own bookkeeping between them), read
 *   through the built CLI's `list_operations --all --json`;
 * - Bazel's: the JSON trace profile Bazel 4.2.3 writes for every build to
 *   `<output_base>/command.profile.gz`, summed by event category (remote execution, input upload,
 *   output download, cache check; local subprocess time for the local build).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import type { ListOperationsResult } from '../../src/commands/list_operations.js';
import type { ExecutionMetadataView } from '../../src/lib/cli/operation-format.js';

const execFileAsync = promisify(execFile);

/** Count, total and percentiles of one phase, in milliseconds. */
export interface PhaseStats {
  count: number;
  totalMs: number;
  p50Ms: number;
  p90Ms: number;
}

/** Summarises a list of durations. */
export function phaseStats(durationsMs: number[]): PhaseStats {
  const sorted = [...durationsMs].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!);
  return { count: sorted.length, totalMs: Math.round(sorted.reduce((s, x) => s + x, 0)), p50Ms: at(0.5), p90Ms: at(0.9) };
}

/** The ExecutedActionMetadata timestamps as `list_operations --json` prints them (ISO strings). */
type TimestampField = Extract<keyof ExecutionMetadataView, `${string}Timestamp`>;

/** Consecutive timestamp pairs and the phase between them; the gaps are the worker's bookkeeping. */
const SERVER_PHASES: [string, TimestampField, TimestampField][] = [
  ['queued', 'queuedTimestamp', 'workerStartTimestamp'],
  ['workerSetup', 'workerStartTimestamp', 'inputFetchStartTimestamp'],
  ['inputFetch', 'inputFetchStartTimestamp', 'inputFetchCompletedTimestamp'],
  ['execution', 'executionStartTimestamp', 'executionCompletedTimestamp'],
  ['outputUpload', 'outputUploadStartTimestamp', 'outputUploadCompletedTimestamp'],
  ['workerCleanup', 'outputUploadCompletedTimestamp', 'workerCompletedTimestamp'],
  ['workerTotal', 'workerStartTimestamp', 'workerCompletedTimestamp'],
];

/** Per-phase statistics over the executed (not cached) operations' metadata. */
export function summariseServerPhases(metadata: Partial<ExecutionMetadataView>[]): Record<string, PhaseStats> {
  const out: Record<string, PhaseStats> = {};
  for (const [name, from, to] of SERVER_PHASES) {
    const durations: number[] = [];
    for (const m of metadata) {
      const a = m[from];
      const b = m[to];
      if (a && b) durations.push(Date.parse(b) - Date.parse(a));
    }
    out[name] = phaseStats(durations);
  }
  return out;
}

/**
 * Asks the scheduler for every Operation it still remembers (through the built CLI) and summarises
 * the phases of those that executed. Resolves with an `error` instead of throwing: the breakdown is
 * a diagnostic, never a reason to drop a measurement.
 */
export async function serverPhaseBreakdown(binPath: string, schedulerAddress: string): Promise<Record<string, PhaseStats> | { error: string }> {
  try {
    const { stdout } = await execFileAsync(process.execPath, [binPath, 'list_operations', '--all', '--json', `--grpc_addr=${schedulerAddress}`], {
      maxBuffer: 512 * 1024 * 1024,
      timeout: 120_000,
    });
    const parsed = JSON.parse(stdout) as ListOperationsResult;
    const metadata = parsed.operations
      .filter((op) => !op.response?.cachedResult)
      .map((op) => op.response?.result?.executionMetadata)
      .filter((m): m is ExecutionMetadataView => m !== undefined);
    return summariseServerPhases(metadata);
  } catch (err) {
    return { error: `Failed to list the scheduler's operations: ${(err as Error).message.split('\n')[0]}` };
  }
}

/** Trace-profile categories that account for a build's action time, local or remote. */
const PROFILE_CATEGORIES = new Set([
  'remote action execution',
  'remote action cache check',
  'Remote execution upload time',
  'remote output download',
  'Remote execution file fetching',
]);
/** Event names (in any category) that do the same for local spawns. */
const PROFILE_NAMES = new Set(['subprocess.run', 'sandbox.delete', 'sandbox.createFileSystem']);

interface TraceEvent {
  ph?: string;
  cat?: string;
  name?: string;
  dur?: number;
}

/** Sums the durations of the action-time events of a trace profile, by category (or name). */
export function summariseProfile(traceEvents: TraceEvent[]): Record<string, PhaseStats> {
  const groups = new Map<string, number[]>();
  for (const e of traceEvents) {
    if (e.ph !== 'X' || e.dur === undefined) continue;
    const key = e.cat && PROFILE_CATEGORIES.has(e.cat) ? e.cat : e.name && PROFILE_NAMES.has(e.name) ? e.name : undefined;
    if (!key) continue;
    const list = groups.get(key) ?? [];
    list.push(Math.round(e.dur / 1000));
    groups.set(key, list);
  }
  return Object.fromEntries([...groups].map(([k, v]) => [k, phaseStats(v)]));
}

/**
 * Reads the profile of the last command run in `outputBase`. Resolves with an `error` when Bazel
 * wrote none or it does not parse.
 */
export function profileBreakdown(outputBase: string): Record<string, PhaseStats> | { error: string } {
  try {
    const json = JSON.parse(gunzipSync(readFileSync(join(outputBase, 'command.profile.gz'))).toString('utf8')) as { traceEvents?: TraceEvent[] };
    return summariseProfile(json.traceEvents ?? []);
  } catch (err) {
    return { error: `Failed to read Bazel's profile in ${outputBase}: ${(err as Error).message}` };
  }
}

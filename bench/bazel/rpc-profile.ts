/**
 * The B2 profile's arithmetic: Bazel's view of every RPC of a warm build (its gRPC log) beside the
 * server's view of the same calls (the `RPC` debug line the one handler boundary writes for each,
 * with its duration), summed per method, so the README can say per cached action how many calls
 * Bazel makes, how long each takes at each end, and how much of the client's time the server does
 * not see (transport, queueing, Bazel's own encoding and file writes).
 */
import { percentile } from '../lib/stats.js';
import type { ClientRpc } from './remote-grpc-log.js';

/** One RPC as the server timed it (handlers.ts: from the handler's start to the status sent). */
export interface ServerRpc {
  method: string;
  durationMs: number;
}

/** Per method: both ends' counts and latencies, in milliseconds. */
export interface MethodProfile {
  method: string;
  /** Calls in Bazel's log. */
  calls: number;
  /** calls / cached actions. */
  callsPerCachedAction: number;
  bazelP50Ms: number;
  bazelP99Ms: number;
  /** Sum of the calls' durations at Bazel (calls overlap: this is busy time, not wall time). */
  bazelTotalMs: number;
  /** Calls the server logged for the method (equal to `calls` unless a call never reached it). */
  serverCalls: number;
  serverP50Ms: number;
  serverP99Ms: number;
  serverTotalMs: number;
  /** bazelP50Ms - serverP50Ms: what a call costs outside the server's handler. */
  gapP50Ms: number;
}

/** Per action (calls grouped by RequestMetadata.action_id): Bazel's time on its remote-cache path. */
export interface ActionProfile {
  actions: number;
  /** From the action's first call starting to its last one ending. */
  spanP50Ms: number;
  spanP99Ms: number;
  /** The calls of one action, one after another or overlapping. */
  callsP50: number;
}

/** Bazel's calls over the build: how much of the time any call was in flight at all. */
export interface TimelineProfile {
  /** From the first call starting to the last one ending. */
  windowMs: number;
  /** Time within the window with no call in flight (Bazel busy elsewhere, or waiting). */
  noCallInFlightMs: number;
  /** From the first call (GetCapabilities, at the start of the build) to the first action's first call. */
  firstActionCallAfterMs: number;
}

export interface RpcProfile {
  /** GetActionResult calls that found a result. */
  cachedActions: number;
  timeline: TimelineProfile;
  methods: MethodProfile[];
  actions: ActionProfile;
}

const r2 = (n: number) => (Number.isFinite(n) ? Math.round(n * 100) / 100 : NaN);
const p = (values: number[], q: number) => (values.length === 0 ? NaN : percentile(values, q));

/** Sums both views per method, busiest method (by Bazel's total) first. */
export function profileRpcs(client: readonly ClientRpc[], server: readonly ServerRpc[]): RpcProfile {
  const cachedActions = client.filter((c) => c.method === 'ActionCache.GetActionResult' && c.code === 0).length;
  const bazelBy = groupBy(client, (c) => c.method, (c) => c.endMs - c.startMs);
  const serverBy = groupBy(server, (s) => s.method, (s) => s.durationMs);
  const methods: MethodProfile[] = [...bazelBy].map(([method, durations]) => {
    const atServer = serverBy.get(method) ?? [];
    return {
      method,
      calls: durations.length,
      callsPerCachedAction: r2(durations.length / Math.max(1, cachedActions)),
      bazelP50Ms: r2(p(durations, 50)),
      bazelP99Ms: r2(p(durations, 99)),
      bazelTotalMs: Math.round(sum(durations)),
      serverCalls: atServer.length,
      serverP50Ms: r2(p(atServer, 50)),
      serverP99Ms: r2(p(atServer, 99)),
      serverTotalMs: Math.round(sum(atServer)),
      gapP50Ms: r2(p(durations, 50) - p(atServer, 50)),
    };
  });
  methods.sort((a, b) => b.bazelTotalMs - a.bazelTotalMs);

  const byAction = new Map<string, ClientRpc[]>();
  for (const c of client) {
    if (!isActionCall(c)) continue;
    const list = byAction.get(c.actionId) ?? [];
    list.push(c);
    byAction.set(c.actionId, list);
  }
  const spans = [...byAction.values()].map((calls) => Math.max(...calls.map((c) => c.endMs)) - Math.min(...calls.map((c) => c.startMs)));
  const counts = [...byAction.values()].map((calls) => calls.length);
  return {
    cachedActions,
    timeline: timeline(client),
    methods,
    actions: { actions: byAction.size, spanP50Ms: r2(p(spans, 50)), spanP99Ms: r2(p(spans, 99)), callsP50: p(counts, 50) },
  };
}

function timeline(client: readonly ClientRpc[]): TimelineProfile {
  if (client.length === 0) return { windowMs: 0, noCallInFlightMs: 0, firstActionCallAfterMs: NaN };
  const start = Math.min(...client.map((c) => c.startMs));
  const end = Math.max(...client.map((c) => c.endMs));
  // Sweep the calls' starts and ends in time order, adding up the stretches with none in flight.
  const events = client.flatMap((c) => [
    { t: c.startMs, d: 1 },
    { t: c.endMs, d: -1 },
  ]);
  events.sort((a, b) => a.t - b.t || b.d - a.d);
  let inFlight = 0;
  let idle = 0;
  let last = start;
  for (const e of events) {
    if (inFlight === 0) idle += e.t - last;
    inFlight += e.d;
    last = e.t;
  }
  const firstAction = Math.min(...client.filter(isActionCall).map((c) => c.startMs));
  return { windowMs: Math.round(end - start), noCallInFlightMs: Math.round(idle), firstActionCallAfterMs: Math.round(firstAction - start) };
}

/** The profile as a Markdown table (what the README quotes). */
export function formatRpcProfile(profile: RpcProfile): string {
  const lines = [
    '| method | calls | per cached action | Bazel p50 / p99 ms | server p50 / p99 ms | gap p50 ms | Bazel total ms | server total ms |',
    '|---|---|---|---|---|---|---|---|',
    ...profile.methods.map(
      (m) =>
        `| ${m.method} | ${m.calls}${m.serverCalls !== m.calls ? ` (server ${m.serverCalls})` : ''} | ${m.callsPerCachedAction} | ${m.bazelP50Ms} / ${m.bazelP99Ms} | ` +
        `${m.serverP50Ms} / ${m.serverP99Ms} | ${m.gapP50Ms} | ${m.bazelTotalMs} | ${m.serverTotalMs} |`,
    ),
  ];
  const a = profile.actions;
  lines.push(
    '',
    `${profile.cachedActions} cached actions; per action (calls grouped by action id, ${a.actions} actions): ` +
      `${a.callsP50} calls p50, first call start to last call end p50 ${a.spanP50Ms} ms, p99 ${a.spanP99Ms} ms`,
    `calls from first to last: ${profile.timeline.windowMs} ms, of which ${profile.timeline.noCallInFlightMs} ms with no call in flight; ` +
      `the first action's first call ${profile.timeline.firstActionCallAfterMs} ms after the build's first call`,
  );
  return lines.join('\n');
}

/**
 * The `RPC` records in the server's JSON log lines (`serve ... --log_level=debug`); other lines are
 * skipped.
 */
export function parseServerRpcLines(lines: Iterable<string>): ServerRpc[] {
  const out: ServerRpc[] = [];
  for (const line of lines) {
    if (!line.includes('"msg":"RPC"')) continue;
    try {
      const record = JSON.parse(line) as { method?: unknown; durationMs?: unknown };
      if (typeof record.method === 'string' && typeof record.durationMs === 'number') out.push({ method: record.method, durationMs: record.durationMs });
    } catch {
      // A line cut by the pipe: not a record.
    }
  }
  return out;
}

/** Bazel tags its GetCapabilities call with the action id "capabilities": that one is no action's. */
function isActionCall(c: ClientRpc): boolean {
  return c.actionId !== '' && !c.method.startsWith('Capabilities.');
}

function groupBy<T>(items: readonly T[], key: (t: T) => string, value: (t: T) => number): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k) ?? [];
    list.push(value(item));
    out.set(k, list);
  }
  return out;
}

function sum(values: readonly number[]): number {
  return values.reduce((s, x) => s + x, 0);
}

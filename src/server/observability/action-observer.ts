/**
 * What the scheduler's operators watch, observed at the service layer rather than inside the build
 * queue: the Execute streams (operations created, cache hits), the WorkerQueue calls (workers and
 * their slots, tasks handed out, results handed in) and, at scrape time, the queue's own operation
 * list (BuildQueue.listOperations). So the queue needs no metrics code and any BuildQueue works.
 * It writes one info log line per action state change (queued, executing on a worker, completed)
 * with the operation name, action digest, worker and instance, and the scheduler metrics.
 */
import type { OperationSnapshot } from '../../lib/scheduler/operation-snapshot.js';
import type { BuildQueue } from '../../lib/scheduler/build-queue.js';
import type { PlatformProperties } from '../../lib/scheduler/platform-properties.js';
import type { reapi, workerapi } from '../../lib/proto/index.js';
import type { Clock } from '../../lib/util/clock.js';
import type { Logger } from '../../lib/util/logger.js';
import { collectedGauge, counter, histogram, type Registry } from '../../lib/util/metrics.js';

/** The hooks the Execution and WorkerQueue services call; all optional to them. */
export interface ActionObserver {
  /** The first snapshot an Execute call yields (the operation was created, joined or answered from cache). */
  executeStarted(snapshot: OperationSnapshot): void;
  /** A worker called Synchronize (it is alive, with these slots and tasks). */
  synchronizing(request: workerapi.ISynchronizeRequest): void;
  /** A worker's Synchronize was answered with `response`. */
  synchronized(request: workerapi.ISynchronizeRequest, response: workerapi.ISynchronizeResponse): void;
  /** A worker handed in a result. */
  taskCompleted(request: workerapi.ICompleteTaskRequest): void;
  /** Live workers and the actions each runs, for the web UI. */
  workers(): WorkerSummary[];
  /** Stops the scrape-time gauges. */
  close(): void;
}

export interface WorkerSummary {
  name: string;
  slots: number;
  running: { operation: string; actionDigest: string; instance: string }[];
}

/** How an action ended, for `bzutil_scheduler_action_outcomes_total`. */
export type ExitClass = 'success' | 'nonzero_exit' | 'timeout' | 'cancelled' | 'error';

export function exitClassOf(response: reapi.IExecuteResponse | null | undefined): ExitClass {
  const code = response?.status?.code ?? 0;
  if (code === 4) return 'timeout'; // DEADLINE_EXCEEDED
  if (code === 1) return 'cancelled';
  if (code !== 0) return 'error';
  return (response?.result?.exitCode ?? 0) === 0 ? 'success' : 'nonzero_exit';
}

/** `<instance>/operations/<uuid>` -> `<instance>` (empty for `operations/<uuid>`). */
function instanceOf(operationName: string): string {
  const i = operationName.lastIndexOf('operations/');
  return i <= 0 ? '' : operationName.slice(0, i - 1);
}

function timestampMs(t: { seconds?: number | Long | null; nanos?: number | null } | null | undefined): number | undefined {
  if (!t || t.seconds === null || t.seconds === undefined) return undefined;
  return Number(t.seconds) * 1000 + (t.nanos ?? 0) / 1e6;
}
type Long = { toNumber(): number };

interface WorkerState {
  name: string;
  slots: number;
  running: number;
  lastSeenMs: number;
}

interface RunningTask {
  operation: string;
  actionDigest: string;
  instance: string;
  worker: string;
  workerId: string;
}

/** Most operations the queue gauge reads per scrape (pages of the queue's maximum size). */
const MAX_SCRAPED_OPERATIONS = 1_000_000;

export interface ActionObserverDeps {
  buildQueue: BuildQueue;
  logger: Logger;
  clock: Clock;
  /** A worker silent for longer is no longer counted (the scheduler's worker lease). */
  workerLeaseMs: number;
  metrics?: Registry;
}

export function createActionObserver(deps: ActionObserverDeps): ActionObserver {
  const { logger, clock, metrics } = deps;
  const workers = new Map<string, WorkerState>();
  const running = new Map<string, RunningTask>();
  const liveWorkers = () => {
    const now = clock.now();
    for (const [id, w] of workers) {
      if (now - w.lastSeenMs <= deps.workerLeaseMs) continue;
      workers.delete(id);
      for (const [taskId, task] of running) if (task.workerId === id) running.delete(taskId);
    }
    return [...workers.values()];
  };

  // Both queue gauges read one pass over the open operations: prom-client collects every metric of
  // a scrape at once, so the pass in flight is shared and dropped when it settles.
  let scanning: Promise<OpenOperations> | undefined;
  const scanOpen = () => (scanning ??= countOpenOperations(deps.buildQueue).finally(() => (scanning = undefined)));

  const m = metrics && {
    cacheHits: counter(metrics, { name: 'bzutil_scheduler_execute_cache_hits_total', help: 'Execute calls answered from the action cache.', labelNames: ['instance'] }),
    queueSeconds: histogram(metrics, {
      name: 'bzutil_scheduler_queued_seconds',
      help: 'Time actions waited in the queue before a worker took them.',
      labelNames: ['instance'],
    }),
    executionSeconds: histogram(metrics, {
      name: 'bzutil_scheduler_execution_seconds',
      help: 'Time a worker spent on an action (fetching inputs, running, uploading outputs), as the worker reports it.',
      labelNames: ['instance'],
    }),
    outcomes: counter(metrics, {
      name: 'bzutil_scheduler_action_outcomes_total',
      help: 'Actions run by workers, by how they ended: success, nonzero_exit, timeout, cancelled, error.',
      labelNames: ['instance', 'outcome'],
    }),
  };
  const unregister = metrics
    ? [
        collectedGauge(
          metrics,
          { name: 'bzutil_scheduler_operations', help: 'Operations the scheduler knows, by instance and stage (QUEUED = queue length).', labelNames: ['instance', 'stage'] },
          async (set) => {
            for (const { instance, stage, n } of (await scanOpen()).byStage) set({ instance, stage }, n);
          },
        ),
        collectedGauge(
          metrics,
          {
            name: 'bzutil_scheduler_queue_length',
            help: `Operations waiting for a worker, by instance and required platform (name=value pairs; at most ${MAX_PLATFORM_LABELS} platforms, the rest "other").`,
            labelNames: ['instance', 'platform'],
          },
          async (set) => {
            for (const { instance, platform, n } of (await scanOpen()).queuedByPlatform) set({ instance, platform }, n);
          },
        ),
        collectedGauge(metrics, { name: 'bzutil_scheduler_workers', help: 'Workers that synchronized within the worker lease.' }, (set) => set({}, liveWorkers().length)),
        collectedGauge(
          metrics,
          { name: 'bzutil_scheduler_worker_slots', help: 'Action slots of live workers: total, and busy (running an action).', labelNames: ['state'] },
          (set) => {
            const live = liveWorkers();
            set({ state: 'total' }, live.reduce((n, w) => n + w.slots, 0));
            set({ state: 'busy' }, live.reduce((n, w) => n + Math.min(w.running, w.slots), 0));
          },
        ),
      ]
    : [];

  return {
    executeStarted(snapshot) {
      const fields = { operation: snapshot.name, actionDigest: snapshot.actionDigest.toString(), instance: snapshot.actionDigest.instanceName };
      if (snapshot.stage === 'COMPLETED' && snapshot.response?.cachedResult) {
        m?.cacheHits.inc({ instance: fields.instance });
        logger.info('Action completed from the action cache', fields);
      } else {
        // The stage when the caller first hears back: QUEUED, or already EXECUTING when an idle
        // worker took it at once or the call joined an identical running action.
        logger.info('Action requested', { ...fields, stage: snapshot.stage });
      }
    },

    synchronizing(request) {
      const id = request.workerId ?? '';
      workers.set(id, { name: request.workerName || id, slots: request.slots ?? 0, running: request.runningTaskIds?.length ?? 0, lastSeenMs: clock.now() });
    },

    synchronized(request, response) {
      const id = request.workerId ?? '';
      const tasks = response.tasks ?? [];
      workers.set(id, { name: request.workerName || id, slots: request.slots ?? 0, running: (request.runningTaskIds?.length ?? 0) + tasks.length, lastSeenMs: clock.now() });
      for (const task of tasks) {
        const instance = task.instanceName ?? '';
        const actionDigest = `${task.actionDigest?.hash ?? ''}/${task.actionDigest?.sizeBytes ?? 0}`;
        const info = { operation: task.operationName ?? '', actionDigest, instance, worker: request.workerName || id };
        running.set(task.taskId ?? '', { ...info, workerId: id });
        const queuedMs = timestampMs(task.queuedTimestamp);
        if (queuedMs !== undefined) m?.queueSeconds.observe({ instance }, Math.max(0, clock.now() - queuedMs) / 1000);
        logger.info('Action executing', { ...info, taskId: task.taskId, queuedMs: queuedMs === undefined ? undefined : Math.max(0, clock.now() - queuedMs) });
      }
      // Tasks the worker no longer reports are over (completed, or lost with the worker).
      for (const [taskId, task] of running) if (task.workerId === id && !isRunning(taskId, request, tasks)) running.delete(taskId);
    },

    taskCompleted(request) {
      const task = running.get(request.taskId ?? '');
      running.delete(request.taskId ?? '');
      const instance = task?.instance ?? '';
      const outcome = exitClassOf(request.response);
      const meta = request.response?.result?.executionMetadata;
      const startMs = timestampMs(meta?.workerStartTimestamp);
      const endMs = timestampMs(meta?.workerCompletedTimestamp);
      if (startMs !== undefined && endMs !== undefined) m?.executionSeconds.observe({ instance }, Math.max(0, endMs - startMs) / 1000);
      m?.outcomes.inc({ instance, outcome });
      logger.info('Action completed', {
        operation: task?.operation,
        actionDigest: task?.actionDigest,
        instance,
        worker: task?.worker ?? request.workerId,
        outcome,
        exitCode: request.response?.result?.exitCode ?? undefined,
      });
    },

    workers() {
      return [...workers.entries()]
        .filter(([id]) => liveWorkers().some((w) => w === workers.get(id)))
        .map(([id, w]) => ({
          name: w.name,
          slots: w.slots,
          running: [...running.values()].filter((t) => t.workerId === id).map(({ operation, actionDigest, instance }) => ({ operation, actionDigest, instance })),
        }));
    },

    close() {
      for (const u of unregister) u();
    },
  };
}

interface OpenOperations {
  byStage: { instance: string; stage: string; n: number }[];
  queuedByPlatform: { instance: string; platform: string; n: number }[];
}

/** Distinct platform label values per scrape; more would let clients blow up the series count. */
export const MAX_PLATFORM_LABELS = 32;
const MAX_PLATFORM_LABEL_CHARS = 200;

/** `name=value,name=value` (sorted), `none` for an empty platform, cut at MAX_PLATFORM_LABEL_CHARS. */
export function platformLabel(platform: PlatformProperties | undefined): string {
  if (!platform) return 'unknown';
  const text = platform.pairs().map(([n, v]) => `${n}=${v}`).join(',');
  if (text === '') return 'none';
  return text.length > MAX_PLATFORM_LABEL_CHARS ? `${text.slice(0, MAX_PLATFORM_LABEL_CHARS - 1)}…` : text;
}

async function countOpenOperations(buildQueue: BuildQueue): Promise<OpenOperations> {
  const byStage = new Map<string, number>();
  const queued = new Map<string, number>();
  let pageToken = '';
  let seen = 0;
  do {
    const page = await buildQueue.listOperations({ allInstances: true, filter: 'done=false', pageSize: 1000, pageToken });
    for (const op of page.operations) {
      const instance = instanceOf(op.name);
      const key = `${instance}\u0000${op.stage}`;
      byStage.set(key, (byStage.get(key) ?? 0) + 1);
      if (op.stage !== 'QUEUED') continue;
      const pkey = `${instance}\u0000${platformLabel(op.platform)}`;
      queued.set(pkey, (queued.get(pkey) ?? 0) + 1);
    }
    seen += page.operations.length;
    pageToken = page.nextPageToken;
  } while (pageToken && seen < MAX_SCRAPED_OPERATIONS);
  // The most-queued platforms keep their own label; the rest are summed under "other" per instance.
  const ranked = new Map<string, number>();
  for (const [key, n] of queued) {
    const platform = key.split('\u0000')[1]!;
    ranked.set(platform, (ranked.get(platform) ?? 0) + n);
  }
  const kept = new Set([...ranked].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, MAX_PLATFORM_LABELS).map(([p]) => p));
  const folded = new Map<string, number>();
  for (const [key, n] of queued) {
    const [instance, platform] = key.split('\u0000') as [string, string];
    const fkey = `${instance}\u0000${kept.has(platform) ? platform : 'other'}`;
    folded.set(fkey, (folded.get(fkey) ?? 0) + n);
  }
  const split = (key: string) => key.split('\u0000') as [string, string];
  return {
    byStage: [...byStage].map(([key, n]) => ({ instance: split(key)[0], stage: split(key)[1], n })),
    queuedByPlatform: [...folded].map(([key, n]) => ({ instance: split(key)[0], platform: split(key)[1], n })),
  };
}

function isRunning(taskId: string, request: workerapi.ISynchronizeRequest, assigned: workerapi.ITask[]): boolean {
  return (request.runningTaskIds ?? []).includes(taskId) || assigned.some((t) => t.taskId === taskId);
}

/**
 * The coordinator's side of the state store: what of an operation or execution is written, and
 * how a restarted scheduler rebuilds its rooms from what was written (`restoreState`).
 *
 * Recovery rules (issue 12):
 * - every operation comes back under its name, with the execution it follows;
 * - queued executions are queued again at their (priority, seq) place;
 * - a running execution keeps its task on a placeholder of its worker for `workerGraceMs`: if the
 *   worker (stable id) synchronizes in time and still lists the task, its result is accepted; if it
 *   comes back without the task (it restarted), or not at all, the execution is requeued under
 *   the same operation names;
 * - an operation that was still checking the cache when the process died has lost its caller's
 *   call: it completes UNAVAILABLE, which Bazel retries.
 */
import { StatusError } from '../errors/status-error.js';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { InMemoryExecutionQueue } from './execution-queue.js';
import type { InMemoryOperationTable } from './operation-table.js';
import type { Execution, OperationEntry } from './scheduler-state.js';
import type { SchedulerStateStore, StoredExecution, StoredOperation } from './state-store.js';
import type { WorkerRegistry } from './worker-registry.js';

export function storedOperation(entry: OperationEntry): StoredOperation {
  return {
    name: entry.name,
    seq: entry.seq,
    actionDigest: entry.actionDigest,
    ...(entry.execution ? { executionSeq: entry.execution.seq } : {}),
    ...(entry.ownResponse ? { ownResponse: entry.ownResponse } : {}),
    ...(entry.completedAtMs !== undefined ? { completedAtMs: entry.completedAtMs } : {}),
  };
}

export function storedExecution(execution: Execution): StoredExecution {
  const task = execution.task;
  return {
    seq: execution.seq,
    actionDigest: execution.actionDigest,
    platform: execution.platform,
    doNotCache: execution.doNotCache,
    priority: execution.priority,
    queuedAtMs: execution.queuedAtMs,
    stage: execution.stage,
    attempts: execution.attempts,
    cancelRequested: execution.cancelRequested,
    ...(task ? { task: { id: task.id, workerId: task.worker.id, startedAtMs: task.startedAtMs, leaseToken: task.leaseToken } } : {}),
    ...(execution.timeoutMs !== undefined ? { timeoutMs: execution.timeoutMs } : {}),
    ...(execution.response ? { response: execution.response } : {}),
  };
}

export interface RestoreDeps {
  store: SchedulerStateStore;
  table: InMemoryOperationTable;
  queue: InMemoryExecutionQueue<Execution>;
  workers: WorkerRegistry;
  clock: Clock;
  logger: Logger;
  workerLeaseMs: number;
  workerGraceMs: number;
}

/** Rebuilds the rooms from the store; returns the next free `seq`. */
export function restoreState(deps: RestoreDeps): number {
  const { store, table, queue, workers, clock, logger } = deps;
  const { operations, executions } = store.load();
  if (operations.length === 0 && executions.length === 0) return 0;
  const now = clock.now();
  let nextSeq = 0;
  const bySeq = new Map<number, Execution>();
  let queued = 0;
  let leases = 0;
  for (const stored of executions) {
    nextSeq = Math.max(nextSeq, stored.seq + 1);
    const execution = executionOf(stored);
    bySeq.set(stored.seq, execution);
    if (execution.stage === 'COMPLETED') continue;
    if (!execution.doNotCache && !execution.cancelRequested) table.setInFlight(execution.actionDigest.key, execution);
    if (stored.stage === 'EXECUTING' && stored.task) {
      // Expires (through the sweeper's lease rule) `workerGraceMs` from now unless the worker calls.
      const worker = workers.get(stored.task.workerId) ?? workers.restore(stored.task.workerId, now - deps.workerLeaseMs + deps.workerGraceMs);
      // -1: the worker's first Synchronize must list the task, or it is lost at once.
      execution.task = workers.assign(execution, worker, stored.task.id, stored.task.leaseToken, -1, stored.task.startedAtMs);
      leases++;
    } else {
      execution.stage = 'QUEUED';
      queue.push(execution);
      queued++;
    }
  }
  const completed: OperationEntry[] = [];
  for (const stored of operations) {
    nextSeq = Math.max(nextSeq, stored.seq + 1);
    const execution = stored.executionSeq === undefined ? undefined : bySeq.get(stored.executionSeq);
    const entry: OperationEntry = {
      name: stored.name,
      seq: stored.seq,
      actionDigest: stored.actionDigest,
      ...(execution ? { execution } : {}),
      ...(stored.ownResponse ? { ownResponse: stored.ownResponse } : {}),
      version: 0,
      listeners: new Set(),
    };
    if (!execution && !entry.ownResponse) {
      entry.ownResponse = { status: StatusError.unavailable('The scheduler restarted before this operation was queued; retry it').toProto() };
      stored.completedAtMs = now;
      store.putOperation({ ...stored, ownResponse: entry.ownResponse });
    }
    if (execution && !entry.ownResponse) execution.entries.add(entry);
    table.insert(entry);
    if (stored.completedAtMs !== undefined) {
      entry.completedAtMs = stored.completedAtMs;
      completed.push(entry);
    }
  }
  // The table expires finished operations in completion order.
  completed.sort((a, b) => a.completedAtMs! - b.completedAtMs!);
  for (const entry of completed) {
    const at = entry.completedAtMs!;
    entry.completedAtMs = undefined;
    table.markCompleted(entry, at);
  }
  logger.info('Restored the scheduler state', { operations: operations.length, queued, runningOnLeases: leases });
  return nextSeq;
}

function executionOf(stored: StoredExecution): Execution {
  return {
    actionDigest: stored.actionDigest,
    platform: stored.platform,
    doNotCache: stored.doNotCache,
    priority: stored.priority,
    seq: stored.seq,
    queuedAtMs: stored.queuedAtMs,
    stage: stored.stage,
    attempts: stored.attempts,
    cancelRequested: stored.cancelRequested,
    finishing: false,
    queuedBytes: stored.queuedBytes ?? 0,
    entries: new Set(),
    ...(stored.timeoutMs !== undefined ? { timeoutMs: stored.timeoutMs } : {}),
    ...(stored.response ? { response: stored.response } : {}),
  };
}

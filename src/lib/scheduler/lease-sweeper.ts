/**
 * The build queue's housekeeping about time only, run every `intervalMs`: workers whose lease ran
 * out are removed (their tasks requeued), queued executions that no connected worker can run fail
 * after `platformQueueTimeoutMs`, tasks running past their action's timeout plus `workerGraceMs` fail
 * with DEADLINE_EXCEEDED, and finished operations are forgotten after `keepCompletedMs`.
 * Everything else (dispatch, cancellation) happens at the event that causes it, never on a timer.
 */
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { InMemoryExecutionQueue } from './execution-queue.js';
import type { InMemoryOperationTable } from './operation-table.js';
import type { Execution, OperationEntry, TaskState, WorkerState } from './scheduler-state.js';
import type { WorkerRegistry } from './worker-registry.js';

export interface LeaseSweeperOptions {
  clock: Clock;
  logger: Logger;
  intervalMs: number;
  workerLeaseMs: number;
  platformQueueTimeoutMs: number;
  keepCompletedMs: number;
  /** A task running past its action's timeout by this much is failed with DEADLINE_EXCEEDED. */
  workerGraceMs: number;
  table: InMemoryOperationTable;
  queue: InMemoryExecutionQueue<Execution>;
  workers: WorkerRegistry;
  /** Removes a worker whose lease ran out and requeues its tasks. */
  loseWorker(worker: WorkerState, reason: string): void;
  /** Fails the execution of a task past its deadline (see TaskDispatcher.expireTask). */
  expireTask(task: TaskState, nowMs: number): void;
  /** Fails a queued execution (already removed from the queue) that no worker could take. */
  failUnschedulable(execution: Execution, waitedMs: number): void;
  /** Detaches an expired operation from its execution. */
  forget(entry: OperationEntry): void;
  /** Answers waiting workers (a sweep may requeue work). */
  dispatch(): void;
}

export class LeaseSweeper {
  constructor(private readonly opts: LeaseSweeperOptions) {}

  /** Sweeps every interval until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, intervalMs, logger } = this.opts;
    while (!signal.aborted) {
      try {
        await clock.sleep(intervalMs, signal);
      } catch {
        return;
      }
      try {
        this.sweep();
      } catch (err) {
        logger.error('Failed to sweep the build queue', { error: err });
      }
    }
  }

  sweep(): void {
    const o = this.opts;
    const now = o.clock.now();
    for (const worker of o.workers.expired(now, o.workerLeaseMs)) {
      o.loseWorker(worker, `worker ${JSON.stringify(worker.name)} did not synchronize for ${now - worker.lastSeenMs} ms`);
    }

    // After the lost workers: an overdue task of a lost worker has been requeued already.
    for (const task of o.workers.overdue(now, o.workerGraceMs)) o.expireTask(task, now);

    const satisfiable = new Map<string, boolean>();
    for (const execution of o.queue.values()) {
      let ok = satisfiable.get(execution.platform.key);
      if (ok === undefined) satisfiable.set(execution.platform.key, (ok = o.workers.anySatisfies(execution.platform)));
      if (ok) {
        execution.unsatisfiableSinceMs = undefined;
      } else if (execution.unsatisfiableSinceMs === undefined) {
        execution.unsatisfiableSinceMs = now;
      } else if (now - execution.unsatisfiableSinceMs >= o.platformQueueTimeoutMs) {
        o.queue.remove(execution);
        o.failUnschedulable(execution, now - execution.unsatisfiableSinceMs);
      }
    }

    for (const entry of o.table.expireCompleted(now - o.keepCompletedMs)) o.forget(entry);
    o.dispatch();
  }
}

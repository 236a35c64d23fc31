/**
 * The build queue's housekeeping about time only, run every `intervalMs`: workers whose lease ran
 * out are removed (their tasks requeued), queued executions that no connected worker can run fail
 * after `platformQueueTimeoutMs`, and finished operations are forgotten after `keepCompletedMs`.
 * Everything else (dispatch, cancellation) happens at the event that causes it, never on a timer.
 */
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { InMemoryExecutionQueue } from './execution-queue.js';
import type { InMemoryOperationTable } from './operation-table.js';
import type { Execution, OperationEntry, WorkerState } from './scheduler-state.js';
import type { WorkerRegistry } from './worker-registry.js';

export interface LeaseSweeperOptions {
  clock: Clock;
  logger: Logger;
  intervalMs: number;
  workerLeaseMs: number;
  platformQueueTimeoutMs: number;
  keepCompletedMs: number;
  table: InMemoryOperationTable;
  queue: InMemoryExecutionQueue<Execution>;
  workers: WorkerRegistry;
  /** Removes a worker whose lease ran out and requeues its tasks. */
  loseWorker(worker: WorkerState, reason: string): void;
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

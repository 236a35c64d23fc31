/**
 * Handing executions to workers: answers held long-polls when work appears, fills a worker's free
 * slots from the queue within the response budget, and requeues (or, after `maxAttempts`, fails) the
 * executions of tasks whose worker was lost.
 */
import type { LoadedAction } from './load-action.js';
import { StatusError } from '../errors/status-error.js';
import type { reapi, workerapi } from '../proto/index.js';
import { msToDuration } from '../proto/proto-time.js';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { InMemoryExecutionQueue } from './execution-queue.js';
import { cancelledResponse, type Execution, type TaskState, type WorkerState } from './scheduler-state.js';
import { originOf, SYNCHRONIZE_RESPONSE_BUDGET_BYTES, toTaskProto } from './task-messages.js';
import { newLeaseToken } from './worker-admission.js';
import type { WorkerRegistry } from './worker-registry.js';

export interface TaskDispatcherOptions {
  clock: Clock;
  logger: Logger;
  newId: () => string;
  workerLeaseMs: number;
  maxAttempts: number;
  queue: InMemoryExecutionQueue<Execution>;
  workers: WorkerRegistry;
  /** Finishes an execution and wakes its operations. */
  completeExecution(execution: Execution, response: reapi.IExecuteResponse): void;
  /** Wakes the operations of an execution whose stage changed. */
  notifyExecution(execution: Execution): void;
  /** The Action and Command of a queued execution (held in memory, or read back from the state store). */
  loadedOf(execution: Execution): LoadedAction | undefined;
}

export class TaskDispatcher {
  constructor(private readonly opts: TaskDispatcherOptions) {}

  /** Answers every waiting worker that now has something to do. */
  dispatch(): void {
    for (const worker of this.opts.workers.all()) {
      if (!worker.poll) continue;
      const hasWork = this.opts.queue.size > 0 && this.opts.workers.freeSlots(worker) > 0;
      if (!hasWork && worker.pendingCancels.size === 0) continue;
      const response = this.takeWork(worker);
      if (response.tasks?.length || response.cancelTaskIds?.length) worker.poll.answer(response);
    }
  }

  /** Pending cancellations plus queued executions the worker can run, up to its free slots. */
  takeWork(worker: WorkerState): workerapi.ISynchronizeResponse {
    const response = { tasks: [] as workerapi.ITask[], cancelTaskIds: [...worker.pendingCancels], lease: msToDuration(this.opts.workerLeaseMs) };
    worker.pendingCancels.clear();
    const freeSlots = this.opts.workers.freeSlots(worker);
    if (freeSlots <= 0 || this.opts.queue.size === 0) return response;
    const claimed = this.opts.queue.claim(worker.platform, freeSlots);
    let budgetBytes = SYNCHRONIZE_RESPONSE_BUDGET_BYTES;
    for (let i = 0; i < claimed.length; i++) {
      const execution = claimed[i]!;
      const loaded = this.opts.loadedOf(execution);
      if (!loaded) {
        this.opts.completeExecution(execution, { status: StatusError.internal(`Failed to hand out action ${execution.actionDigest}: its Action is no longer in the scheduler state`).toProto() });
        continue;
      }
      const taskId = this.opts.newId();
      const leaseToken = newLeaseToken();
      const { task, sizeBytes } = toTaskProto(originOf(execution), loaded, taskId, leaseToken);
      if (response.tasks.length > 0 && sizeBytes > budgetBytes) {
        // The response is full: the rest go back to their places for the next call.
        for (const rest of claimed.slice(i)) this.opts.queue.push(rest);
        break;
      }
      budgetBytes -= sizeBytes;
      this.assign(execution, worker, taskId, leaseToken);
      response.tasks.push(task);
    }
    return response;
  }

  assign(execution: Execution, worker: WorkerState, taskId: string, leaseToken: string): void {
    execution.task = this.opts.workers.assign(execution, worker, taskId, leaseToken);
    execution.stage = 'EXECUTING';
    execution.attempts++;
    execution.unsatisfiableSinceMs = undefined;
    this.opts.logger.debug('Assigned task', { taskId, worker: worker.name, actionDigest: execution.actionDigest.toString(), attempt: execution.attempts });
    this.opts.notifyExecution(execution);
  }

  /** Requeues the execution of a task whose worker lost it, or fails it after `maxAttempts`. */
  loseTask(task: TaskState, reason: string): void {
    this.opts.workers.release(task);
    const execution = task.execution;
    if (execution.task !== task) return;
    execution.task = undefined;
    if (execution.cancelRequested) {
      this.opts.completeExecution(execution, cancelledResponse('The operation was cancelled; its worker is gone'));
      return;
    }
    const fields = { actionDigest: execution.actionDigest.toString(), attempts: execution.attempts, reason };
    if (execution.attempts >= this.opts.maxAttempts) {
      this.opts.logger.warn('Giving up on an action after losing its worker', fields);
      this.opts.completeExecution(execution, {
        status: StatusError.unavailable(`Failed to execute action ${execution.actionDigest}: lost its worker on all ${execution.attempts} attempts; last: ${reason}`).toProto(),
      });
      return;
    }
    this.opts.logger.warn('Requeuing an action after losing its worker', fields);
    execution.stage = 'QUEUED';
    if (!this.opts.workers.anySatisfies(execution.platform)) execution.unsatisfiableSinceMs = this.opts.clock.now();
    this.opts.queue.push(execution);
    this.opts.notifyExecution(execution);
  }

  /**
   * Fails the execution of a task that ran past its action's timeout plus a grace: the worker should
   * have stopped it by itself, so it is told to cancel and its late result is ignored.
   */
  expireTask(task: TaskState, nowMs: number): void {
    this.opts.workers.release(task);
    const execution = task.execution;
    if (execution.task !== task) return;
    execution.task = undefined;
    if (this.opts.workers.isLive(task.worker)) task.worker.pendingCancels.add(task.id);
    const ranMs = nowMs - task.startedAtMs;
    this.opts.logger.warn('Failing an action that ran past its timeout', { actionDigest: execution.actionDigest.toString(), worker: task.worker.name, ranMs });
    this.opts.completeExecution(execution, {
      status: StatusError.deadlineExceeded(`Failed to execute action ${execution.actionDigest}: worker ${JSON.stringify(task.worker.name)} ran it for ${ranMs} ms, past its timeout of ${execution.timeoutMs} ms`).toProto(),
    });
  }

  removeWorker(worker: WorkerState, reason: string): void {
    this.opts.workers.remove(worker);
    worker.poll?.answer(this.emptyResponse());
    this.opts.logger.warn('Worker lost', { workerId: worker.id, workerName: worker.name, runningTasks: worker.tasks.size, reason });
    for (const task of [...worker.tasks.values()]) this.loseTask(task, reason);
  }

  emptyResponse(): workerapi.ISynchronizeResponse {
    return { tasks: [], cancelTaskIds: [], lease: msToDuration(this.opts.workerLeaseMs) };
  }
}

/**
 * What the scheduler believes of a worker, and what it does not. A worker is a network peer: its
 * Synchronize may be garbage or a lie, and a CompleteTask may come from someone who never held the
 * task. These checks sit in front of the registry so that nothing is registered, and nothing reaches
 * the ActionCache, before they pass.
 *
 * - Every task attempt carries a random lease token (Task.lease_token); a completion is accepted only
 *   with the worker id the task was handed to and that token (compared in constant time). Anything
 *   else is refused with PERMISSION_DENIED and logged, and changes nothing.
 * - A Synchronize must name its worker with a short printable id; one that does not (an empty id, or
 *   bytes that happened to decode as a string) registers nothing.
 * - The slots a worker announces are capped by the scheduler (`maxWorkerSlots`): a worker claiming
 *   10000 slots cannot hoard the queue.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { StatusError } from '../errors/status-error.js';
import type { workerapi } from '../proto/index.js';
import type { Logger } from '../util/logger.js';
import type { TaskState } from './scheduler-state.js';

/** Worker ids and names: printable ASCII without spaces, as `randomUUID()` or `host:pid` are. */
const WORKER_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;
const MAX_WORKER_NAME_LENGTH = 256;

/** A fresh secret for one task attempt (128 bits, hex). */
export function newLeaseToken(): string {
  return randomBytes(16).toString('hex');
}

/**
 * Throws INVALID_ARGUMENT unless the request names its worker properly; returns the slots to
 * believe (at most `maxWorkerSlots`, warning when the worker claimed more).
 */
export function admitSynchronize(request: workerapi.ISynchronizeRequest, maxWorkerSlots: number, logger: Logger): number {
  const workerId = request.workerId ?? '';
  if (!WORKER_ID_PATTERN.test(workerId)) {
    throw StatusError.invalidArgument(
      workerId === '' ? 'Failed to synchronize worker: worker_id is empty' : 'Failed to synchronize worker: worker_id is not 1-128 printable ASCII characters',
      [{ field: 'worker_id', description: 'Must identify the worker process: 1-128 printable ASCII characters, no spaces' }],
    );
  }
  const name = request.workerName ?? '';
  if (name.length > MAX_WORKER_NAME_LENGTH || /[\x00-\x1f\x7f]/.test(name)) {
    throw StatusError.invalidArgument(`Failed to synchronize worker: worker_name is longer than ${MAX_WORKER_NAME_LENGTH} characters or has control characters`, [
      { field: 'worker_name', description: `At most ${MAX_WORKER_NAME_LENGTH} characters, no control characters` },
    ]);
  }
  const claimed = Math.max(0, request.slots ?? 0);
  if (claimed <= maxWorkerSlots) return claimed;
  logger.warn('Worker claims more slots than the scheduler allows; capping', { workerId, claimed, maxWorkerSlots });
  return maxWorkerSlots;
}

/**
 * The task a completion may finish: PERMISSION_DENIED (logged) unless `request` comes from the
 * worker holding the task's current lease, NOT_FOUND for a task the scheduler no longer knows
 * (cancelled or requeued after its worker was presumed lost).
 */
export function admitCompletion(task: TaskState | undefined, request: workerapi.ICompleteTaskRequest, logger: Logger): TaskState {
  const fields = { taskId: request.taskId, workerId: request.workerId };
  if (!task) {
    logger.info('Refusing the result of an unknown task', fields);
    throw StatusError.notFound(`Failed to complete task ${JSON.stringify(request.taskId)}: the scheduler has no such task (cancelled, or requeued after its worker was lost)`);
  }
  if (request.workerId !== task.worker.id || !sameToken(request.leaseToken ?? '', task.leaseToken)) {
    logger.warn('Refusing a result from a worker that does not hold the lease', { ...fields, holder: task.worker.id });
    throw StatusError.permissionDenied(`Failed to complete task ${JSON.stringify(request.taskId)}: the caller does not hold its lease`);
  }
  return task;
}

/** Compares lease tokens in constant time. */
export function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

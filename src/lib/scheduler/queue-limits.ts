/**
 * The queue's admission rule, one copy for every backend (memory, SQLite, Redis): an instance may
 * have at most `maxQueuedActionsPerInstance` executions and `maxQueuedBytesPerInstance` bytes of
 * Actions, Commands and handed-over Directories waiting for a worker, and the whole queue at most
 * `maxQueuedOperations`. Past a limit Execute fails with RESOURCE_EXHAUSTED naming the limit, so an
 * operator knows which key to raise and a client knows to back off; one tenant filling its queue
 * does not take the others' room. Requeues after a lost worker are not refused (the execution was
 * admitted once).
 */
import type { Digest } from '../digest/digest.js';
import { StatusError } from '../errors/status-error.js';
import { formatSizeBytes } from '../util/units.js';
import type { BuildQueueLimits } from './build-queue-options.js';
import type { QueueUsage } from './execution-queue.js';

/** Which limit an admission broke; `undefined` when the execution may be queued. */
export type QueueLimitBroken = 'total' | 'actions' | 'bytes';

/** Which limit queueing `sizeBytes` more for an instance with `usage` (and `totalQueued` overall) would break. */
export function brokenQueueLimit(
  limits: Pick<BuildQueueLimits, 'maxQueuedOperations' | 'maxQueuedActionsPerInstance' | 'maxQueuedBytesPerInstance'>,
  usage: QueueUsage,
  totalQueued: number,
  sizeBytes: number,
): QueueLimitBroken | undefined {
  if (totalQueued >= limits.maxQueuedOperations) return 'total';
  if (usage.actions >= limits.maxQueuedActionsPerInstance) return 'actions';
  if (usage.bytes + sizeBytes > limits.maxQueuedBytesPerInstance) return 'bytes';
  return undefined;
}

/** The RESOURCE_EXHAUSTED for `broken`, naming the limit and its config key. */
export function queueFullError(
  broken: QueueLimitBroken,
  actionDigest: Digest,
  limits: Pick<BuildQueueLimits, 'maxQueuedOperations' | 'maxQueuedActionsPerInstance' | 'maxQueuedBytesPerInstance'>,
): StatusError {
  const instance = JSON.stringify(actionDigest.instanceName.slice(0, 64));
  const why =
    broken === 'total'
      ? `the queue already holds the maximum of ${limits.maxQueuedOperations} operations`
      : broken === 'actions'
        ? `instance ${instance} already has the maximum of ${limits.maxQueuedActionsPerInstance} queued actions (scheduler.max_queued_actions_per_instance)`
        : `instance ${instance} would exceed its ${formatSizeBytes(limits.maxQueuedBytesPerInstance)} of queued Actions and Commands (scheduler.max_queued_bytes_per_instance)`;
  return StatusError.resourceExhausted(`Failed to queue action ${actionDigest}: ${why}`);
}

/** Throws queueFullError when queueing would break a limit. */
export function admitToQueue(
  limits: Pick<BuildQueueLimits, 'maxQueuedOperations' | 'maxQueuedActionsPerInstance' | 'maxQueuedBytesPerInstance'>,
  actionDigest: Digest,
  usage: QueueUsage,
  totalQueued: number,
  sizeBytes: number,
): void {
  const broken = brokenQueueLimit(limits, usage, totalQueued, sizeBytes);
  if (broken) throw queueFullError(broken, actionDigest, limits);
}

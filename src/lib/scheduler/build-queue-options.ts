/**
 * The build queue's tunables, with their defaults and validation in one place so that the queue's
 * constructor only wires rooms together.
 */
import type { ActionCache } from '../actioncache/action-cache.js';
import type { BlobStore } from '../blobstore/blob-store.js';
import { StatusError } from '../errors/status-error.js';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { SchedulerStateStore } from './state-store.js';

export interface InMemoryBuildQueueOptions {
  /** Where Actions, Commands and input trees are read from (and checked for completeness). */
  contentAddressableStorage: BlobStore;
  /** Looked up before executing (unless skip_cache_lookup) and written after successful executions. */
  actionCache: ActionCache;
  /** @default systemClock */
  clock?: Clock;
  /** @default silentLogger */
  logger?: Logger;
  /** Timeout of actions that set none. @default 1 h */
  defaultTimeoutMs?: number;
  /** Actions asking for more are rejected with INVALID_ARGUMENT. @default 3 h */
  maxTimeoutMs?: number;
  /** Executions waiting for a worker; beyond it Execute fails with RESOURCE_EXHAUSTED. @default 10000 */
  maxQueuedOperations?: number;
  /** Executions one instance may have waiting (queue-limits.ts). @default 10000 */
  maxQueuedActionsPerInstance?: number;
  /** Bytes of Actions, Commands and handed-over Directories one instance may have waiting. @default 1 GiB */
  maxQueuedBytesPerInstance?: number;
  /** A queued action no connected worker can run fails (FAILED_PRECONDITION) after this. @default 60 s */
  platformQueueTimeoutMs?: number;
  /** A worker that has no Synchronize outstanding for this long is gone (its tasks requeued). @default 5 s, the worker grace */
  workerLeaseMs?: number;
  /** The most slots one worker is believed to have, whatever it announces. @default 256 */
  maxWorkerSlots?: number;
  /** Attempts of an execution before a lost worker fails it with UNAVAILABLE. @default 3 */
  maxAttempts?: number;
  /** How long finished operations stay queryable. @default 1 h */
  keepCompletedMs?: number;
  /** Longest a Synchronize call is held when there is nothing to do. @default 10 s */
  longPollMs?: number;
  /** Execute and WaitExecution streams repeat the current state at least this often. @default 30 s */
  keepAliveMs?: number;
  /** Period of the sweeper (leases, platform timeouts, expiry). @default 1 s */
  sweepIntervalMs?: number;
  /**
   * Input trees whose Directory messages total at most this travel to the worker with the task, so
   * the worker does not fetch them again; they are held in memory while the action is queued.
   * @default 256 KiB
   */
  maxHandOverBytes?: number;
  /**
   * Where operations, the queue and leases are written through so that a restarted scheduler finds
   * them again (see state-store.ts). Owned by the caller, who closes it after the queue.
   * @default NO_STATE_STORE (memory only)
   */
  state?: SchedulerStateStore;
  /**
   * After a restart, how long a running action's lease waits for its worker to synchronize again
   * before the action is requeued. @default 5 s
   */
  workerGraceMs?: number;
  /** Generates operation and task ids. @default crypto.randomUUID */
  newId?: () => string;
}

/** Queue limits per instance: on disk (SQLite, the memory state's spool) or in Redis, not the scheduler's heap. */
export const DEFAULT_MAX_QUEUED_ACTIONS_PER_INSTANCE = 10_000;
export const DEFAULT_MAX_QUEUED_BYTES_PER_INSTANCE = 1024 ** 3;

/** The numeric tunables with defaults applied. */
export interface BuildQueueLimits {
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  maxQueuedOperations: number;
  maxQueuedActionsPerInstance: number;
  maxQueuedBytesPerInstance: number;
  platformQueueTimeoutMs: number;
  workerLeaseMs: number;
  maxWorkerSlots: number;
  maxAttempts: number;
  keepCompletedMs: number;
  longPollMs: number;
  keepAliveMs: number;
  sweepIntervalMs: number;
  maxHandOverBytes: number;
  workerGraceMs: number;
}

/** Applies defaults; INVALID_ARGUMENT for a non-positive value or a default timeout above the maximum. */
export function resolveLimits(opts: InMemoryBuildQueueOptions): BuildQueueLimits {
  const limits: BuildQueueLimits = {
    defaultTimeoutMs: positive('defaultTimeoutMs', opts.defaultTimeoutMs, 60 * 60_000),
    maxTimeoutMs: positive('maxTimeoutMs', opts.maxTimeoutMs, 3 * 60 * 60_000),
    maxQueuedOperations: positive('maxQueuedOperations', opts.maxQueuedOperations, 10_000),
    maxQueuedActionsPerInstance: positive('maxQueuedActionsPerInstance', opts.maxQueuedActionsPerInstance, DEFAULT_MAX_QUEUED_ACTIONS_PER_INSTANCE),
    maxQueuedBytesPerInstance: positive('maxQueuedBytesPerInstance', opts.maxQueuedBytesPerInstance, DEFAULT_MAX_QUEUED_BYTES_PER_INSTANCE),
    platformQueueTimeoutMs: positive('platformQueueTimeoutMs', opts.platformQueueTimeoutMs, 60_000),
    workerLeaseMs: positive('workerLeaseMs', opts.workerLeaseMs, 5_000),
    maxWorkerSlots: positive('maxWorkerSlots', opts.maxWorkerSlots, 256),
    maxAttempts: positive('maxAttempts', opts.maxAttempts, 3),
    keepCompletedMs: positive('keepCompletedMs', opts.keepCompletedMs, 60 * 60_000),
    longPollMs: positive('longPollMs', opts.longPollMs, 10_000),
    keepAliveMs: positive('keepAliveMs', opts.keepAliveMs, 30_000),
    sweepIntervalMs: positive('sweepIntervalMs', opts.sweepIntervalMs, 1_000),
    maxHandOverBytes: positive('maxHandOverBytes', opts.maxHandOverBytes, 256 * 1024),
    workerGraceMs: positive('workerGraceMs', opts.workerGraceMs, 5_000),
  };
  if (limits.defaultTimeoutMs > limits.maxTimeoutMs) {
    throw StatusError.invalidArgument(
      `Failed to create build queue: defaultTimeoutMs ${limits.defaultTimeoutMs} exceeds maxTimeoutMs ${limits.maxTimeoutMs}`,
      [{ field: 'defaultTimeoutMs', description: 'Must not exceed maxTimeoutMs' }],
    );
  }
  return limits;
}

function positive(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) {
    throw StatusError.invalidArgument(`Failed to create build queue: ${field} ${JSON.stringify(value)} is not a positive number`, [
      { field, description: 'Must be a positive number' },
    ]);
  }
  return value;
}

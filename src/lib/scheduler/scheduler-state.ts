/**
 * The scheduler's live objects, shared by the rooms of the build queue (operation table, execution
 * queue, worker registry, sweeper, coordinator).
 *
 * Vocabulary: an *operation* is what a client sees (one per Execute call, with its own name); an
 * *execution* is the work behind it. Concurrent Execute calls of the same cacheable action share one
 * execution (in-flight deduplication). A *task* is one attempt of an execution on one worker.
 */
import type { Digest } from '../digest/digest.js';
import { StatusError } from '../errors/status-error.js';
import type { reapi, workerapi } from '../proto/index.js';
import type { LoadedAction } from './load-action.js';
import type { ExecutionStage, OperationSnapshot } from './operation-snapshot.js';
import type { PlatformProperties } from './platform-properties.js';

export interface OperationEntry {
  readonly name: string;
  /** Creation order; the ListOperations page token. */
  readonly seq: number;
  readonly actionDigest: Digest;
  /** The execution this operation follows; absent while the cache is checked and inputs validated. */
  execution?: Execution;
  /** Set when the operation finished on its own: cache hit, or cancelled while sharing an execution. */
  ownResponse?: reapi.IExecuteResponse;
  completedAtMs?: number;
  /** Bumped on every visible change; followers compare it to know whether to report. */
  version: number;
  readonly listeners: Set<() => void>;
}

export interface Execution {
  readonly actionDigest: Digest;
  /** Dropped once completed; the snapshot does not need it. Not held when the state store holds it (holdsActions). */
  loaded?: LoadedAction;
  /** The action's effective timeout. */
  readonly timeoutMs?: number;
  readonly platform: PlatformProperties;
  readonly doNotCache: boolean;
  /** Lower runs first. */
  readonly priority: number;
  /** Arrival order, the tie-breaker within a priority (kept on requeue, so retries go first). */
  readonly seq: number;
  readonly queuedAtMs: number;
  /** What it counts against its instance's queued-bytes limit while queued (LoadedAction.sizeBytes). */
  readonly queuedBytes: number;
  stage: Exclude<ExecutionStage, 'CACHE_CHECK'>;
  attempts: number;
  task?: TaskState;
  cancelRequested: boolean;
  /** The worker reported; the result is being written to the action cache. */
  finishing: boolean;
  response?: reapi.IExecuteResponse;
  readonly entries: Set<OperationEntry>;
  /** Since when no connected worker has had the platform this execution needs. */
  unsatisfiableSinceMs?: number;
}

export interface TaskState {
  readonly id: string;
  readonly execution: Execution;
  readonly worker: WorkerState;
  /** The worker's Synchronize count when the task was handed out, for reconciliation. */
  readonly assignedInSync: number;
  /** The secret of this attempt's lease (Task.lease_token); CompleteTask must echo it. */
  readonly leaseToken: string;
  /** When the task was handed out: with the action's timeout, the scheduler-side deadline. */
  readonly startedAtMs: number;
}

export interface WorkerState {
  readonly id: string;
  name: string;
  platform: PlatformProperties;
  slots: number;
  readonly tasks: Map<string, TaskState>;
  /** Task ids to send in the next Synchronize response's cancel_task_ids. */
  readonly pendingCancels: Set<string>;
  /** Tasks the worker reported that the scheduler does not know, already told to cancel. */
  readonly unknownTasksCancelled: Set<string>;
  poll?: PendingPoll;
  syncCount: number;
  /** When the worker last called or was last answered; the lease runs from here while no poll is held. */
  lastSeenMs: number;
}

export interface PendingPoll {
  answer(response: workerapi.ISynchronizeResponse): void;
}

/** What a client sees of `entry` now. */
export function snapshotOf(entry: OperationEntry): OperationSnapshot {
  const base = { name: entry.name, actionDigest: entry.actionDigest };
  if (entry.ownResponse) return { ...base, stage: 'COMPLETED', response: entry.ownResponse };
  const execution = entry.execution;
  if (!execution) return { ...base, stage: 'CACHE_CHECK' };
  // Tasks carry the execution's first operation (task-messages.ts): its streams are this one's.
  const first = (execution.entries.values().next().value as OperationEntry | undefined)?.name;
  const logs = first !== undefined && first !== entry.name ? { logStreamOperation: first } : {};
  if (execution.stage === 'COMPLETED') return { ...base, ...logs, stage: 'COMPLETED', response: execution.response ?? {} };
  return { ...base, ...logs, stage: execution.stage, platform: execution.platform };
}

/** Marks a visible change of `entry` and wakes its followers. */
export function bump(entry: OperationEntry): void {
  entry.version++;
  for (const listener of [...entry.listeners]) listener();
}

export function cancelledResponse(message: string): reapi.IExecuteResponse {
  return { status: StatusError.cancelled(message).toProto() };
}

export function shuttingDown(): StatusError {
  return StatusError.unavailable('The scheduler is shutting down');
}

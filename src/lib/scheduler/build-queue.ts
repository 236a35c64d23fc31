/**
 * The scheduler's one abstraction, after Buildbarn's BuildQueue: clients submit actions and follow
 * operations (Execution and google.longrunning Operations services), workers pull tasks and hand in
 * results (WorkerQueue service). The gRPC services are thin adapters over it. InMemoryBuildQueue keeps
 * the state in this process (with a SQLite journal by default); RedisBuildQueue keeps it in Redis,
 * shared by a fleet of schedulers (create-build-queue.ts chooses).
 */
import type { CallOptions } from '../blobstore/blob-store.js';
import type { Digest } from '../digest/digest.js';
import type { workerapi } from '../proto/index.js';
import type { OperationSnapshot } from './operation-snapshot.js';
import type { MaybePromise } from '../util/maybe-promise.js';

export interface ExecuteRequest {
  /** The validated action digest; it carries the instance name and digest function. */
  actionDigest: Digest;
  /** Run the action even when the action cache has a result for it. */
  skipCacheLookup: boolean;
  /** ExecutionPolicy.priority: lower values run first; 0 is the default. */
  priority: number;
  /** ResultsCachePolicy.priority; accepted and currently ignored. */
  resultsCachePriority?: number;
}

export interface ListOperationsRequest {
  /**
   * Collection name: `operations` or `<instance>/operations` (operation-names.ts). Empty is the
   * empty instance, never "every instance": callers only see their own instance's operations.
   */
  name?: string;
  /** Lists every instance's operations, ignoring `name`: for the operator's UI and metrics, never a client's request. */
  allInstances?: boolean;
  /** Empty, `done=true` or `done=false`. */
  filter?: string;
  /** At most this many operations per page; 0 means the implementation's default. */
  pageSize?: number;
  /** The `nextPageToken` of the previous page. */
  pageToken?: string;
}

export interface ListOperationsResult {
  operations: OperationSnapshot[];
  /** Empty on the last page. */
  nextPageToken: string;
}

/**
 * Lookups return `MaybePromise`: the in-memory queue answers at once, a shared (Redis) one after a
 * round trip; callers always `await` them.
 */
export interface BuildQueue {
  /**
   * Starts (or joins an identical in-flight) execution of an action and follows it: yields the
   * operation's state at every change and at least every keep-alive interval, and ends after the
   * COMPLETED snapshot. Throws before yielding for requests that cannot run: FAILED_PRECONDITION
   * with PreconditionFailure MISSING details for absent inputs, INVALID_ARGUMENT for malformed
   * actions, RESOURCE_EXHAUSTED when the queue is full.
   */
  execute(request: ExecuteRequest, opts?: CallOptions): AsyncIterable<OperationSnapshot>;
  /** Reattaches to an operation: its current state at once, then as `execute`. NOT_FOUND if unknown. */
  waitExecution(name: string, opts?: CallOptions): AsyncIterable<OperationSnapshot>;
  /** The current state. NOT_FOUND if unknown or forgotten. */
  getOperation(name: string): MaybePromise<OperationSnapshot>;
  /** A page of known operations in creation order. */
  listOperations(request: ListOperationsRequest): MaybePromise<ListOperationsResult>;
  /**
   * Cancels an operation: a queued one completes at once, a running one once its worker has killed
   * it, both with CANCELLED in ExecuteResponse.status. No-op on done operations; NOT_FOUND if unknown.
   */
  cancelOperation(name: string): MaybePromise<void>;
  /** Forgets a done operation. FAILED_PRECONDITION while it still runs; NOT_FOUND if unknown. */
  deleteOperation(name: string): MaybePromise<void>;
  /** Resolves when the operation is done or after `timeoutMs`, with its state then. */
  waitOperation(name: string, timeoutMs: number, opts?: CallOptions): Promise<OperationSnapshot>;

  /** Worker long-poll: reports the worker's state and resolves with tasks or cancellations. */
  synchronize(request: workerapi.ISynchronizeRequest, opts?: CallOptions): Promise<workerapi.ISynchronizeResponse>;
  /**
   * Worker hands in the outcome of one task. PERMISSION_DENIED unless the caller holds the task's
   * current lease (worker id and lease token); NOT_FOUND for a task no longer known.
   */
  completeTask(request: workerapi.ICompleteTaskRequest): Promise<void>;

  /** Stops timers, answers pending polls and ends every follower with UNAVAILABLE. */
  close(): void;
}

/**
 * The operation table: every operation the scheduler knows by name, in creation order, with the
 * in-flight index that lets identical cacheable actions share one execution, and the record of
 * finished operations kept until they expire.
 *
 * ## For a backend author (SQLite, Redis; see issue 12)
 * Methods return `MaybePromise`: the in-memory table answers at once, a durable one after I/O.
 * - Persist per operation: `name`, `seq`, the action digest, the execution it follows (by action
 *   digest key and execution seq), `ownResponse` and `completedAtMs`. `version` and `listeners` are
 *   process-local (who is following right now); rebuild them empty when loading.
 * - `seq` must be strictly increasing across restarts (and across schedulers sharing a store): it is
 *   the ListOperations page token and the tie-breaker of the queue order.
 * - One state change is one call: make each method one transaction. The coordinator never relies
 *   on two calls being atomic together, except `setInFlight` after a failed `inFlight` lookup;
 *   a shared store must make that pair a compare-and-set (return the winner).
 * - `expireCompleted` is called by the sweeper about once a second; keep it indexed by completion
 *   time.
 * InMemoryBuildQueue binds to InMemoryOperationTable's synchronous signatures: it changes state and
 * wakes followers in one event-loop turn. A coordinator over a durable table must serialize state
 * changes (one at a time) and await every call.
 *
 * The SQLite state (`scheduler.state: sqlite:PATH`) does not replace this room: being synchronous,
 * it journals the coordinator's state changes next to the in-memory rooms and rebuilds them at start
 * (state-store.ts, state-journal.ts). A shared backend (Redis, several schedulers) needs the route
 * described above.
 */
import { StatusError } from '../errors/status-error.js';
import type { MaybePromise } from '../util/maybe-promise.js';
import type { ListOperationsRequest, ListOperationsResult } from './build-queue.js';
import { parseOperationsCollection } from './operation-names.js';
import type { OperationSnapshot } from './operation-snapshot.js';
import { type Execution, type OperationEntry, snapshotOf } from './scheduler-state.js';

export interface OperationTable {
  /** Operations currently known. */
  readonly size: number;
  /** Adds a new operation; INTERNAL if its name is taken (ids must be unique). */
  insert(entry: OperationEntry): MaybePromise<void>;
  get(name: string): MaybePromise<OperationEntry | undefined>;
  /** Forgets `entry` (no-op when the name now belongs to another entry). */
  delete(entry: OperationEntry): MaybePromise<void>;
  /** Operations with `seq > afterSeq` of instance `instanceName` (every instance when undefined), in creation order. */
  list(afterSeq: number, instanceName: string | undefined): MaybePromise<Iterable<OperationEntry>>;
  /** Records that `entry` finished at `atMs` (first call wins), for expiry. */
  markCompleted(entry: OperationEntry, atMs: number): MaybePromise<void>;
  /** Forgets operations that finished at or before `beforeMs` and returns them. */
  expireCompleted(beforeMs: number): MaybePromise<OperationEntry[]>;
  /** The queued or running cacheable execution of an action, by `Digest.key`. */
  inFlight(actionKey: string): MaybePromise<Execution | undefined>;
  setInFlight(actionKey: string, execution: Execution): MaybePromise<void>;
  /** Drops the in-flight index entry if it still points at `execution`. */
  clearInFlight(actionKey: string, execution: Execution): MaybePromise<void>;
}

export class InMemoryOperationTable implements OperationTable {
  /** Every known operation by name; a Map iterates in insertion (= creation) order. */
  private readonly operations = new Map<string, OperationEntry>();
  private readonly inFlightByAction = new Map<string, Execution>();
  /** Finished operations in completion order; `completedHead` is the first live index. */
  private completed: OperationEntry[] = [];
  private completedHead = 0;

  get size(): number {
    return this.operations.size;
  }

  insert(entry: OperationEntry): void {
    if (this.operations.has(entry.name)) throw StatusError.internal(`Failed to create operation: name ${JSON.stringify(entry.name)} is already in use`);
    this.operations.set(entry.name, entry);
  }

  get(name: string): OperationEntry | undefined {
    return this.operations.get(name);
  }

  delete(entry: OperationEntry): void {
    if (this.operations.get(entry.name) === entry) this.operations.delete(entry.name);
  }

  *list(afterSeq: number, instanceName: string | undefined): Iterable<OperationEntry> {
    for (const entry of this.operations.values()) {
      if (entry.seq > afterSeq && (instanceName === undefined || entry.actionDigest.instanceName === instanceName)) yield entry;
    }
  }

  markCompleted(entry: OperationEntry, atMs: number): void {
    if (entry.completedAtMs !== undefined) return;
    entry.completedAtMs = atMs;
    this.completed.push(entry);
  }

  expireCompleted(beforeMs: number): OperationEntry[] {
    const expired: OperationEntry[] = [];
    while (this.completedHead < this.completed.length) {
      const entry = this.completed[this.completedHead]!;
      if (entry.completedAtMs! > beforeMs) break;
      this.delete(entry);
      expired.push(entry);
      this.completedHead++;
    }
    // Compact once the dead prefix dominates, so the array does not grow forever.
    if (this.completedHead > 1024 && this.completedHead * 2 > this.completed.length) {
      this.completed = this.completed.slice(this.completedHead);
      this.completedHead = 0;
    }
    return expired;
  }

  inFlight(actionKey: string): Execution | undefined {
    return this.inFlightByAction.get(actionKey);
  }

  setInFlight(actionKey: string, execution: Execution): void {
    this.inFlightByAction.set(actionKey, execution);
  }

  clearInFlight(actionKey: string, execution: Execution): void {
    if (this.inFlightByAction.get(actionKey) === execution) this.inFlightByAction.delete(actionKey);
  }
}

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

/** A validated ListOperations request: where to start, which names, which done state, how many. */
export interface ListQuery {
  afterSeq: number;
  /** The one instance listed; undefined (only with `allInstances`) lists every instance. */
  instanceName: string | undefined;
  /** undefined: all; true: done only; false: not done only. */
  done?: boolean;
  pageSize: number;
}

/** Checks a ListOperations request (INVALID_ARGUMENT for a bad token or filter). */
export function parseListRequest(request: ListOperationsRequest): ListQuery {
  const pageSize = Math.min(request.pageSize && request.pageSize > 0 ? request.pageSize : DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  let afterSeq = -1;
  if (request.pageToken) {
    afterSeq = /^\d+$/.test(request.pageToken) ? Number(request.pageToken) : NaN;
    if (!Number.isSafeInteger(afterSeq)) {
      throw StatusError.invalidArgument(`Failed to list operations: page token ${JSON.stringify(request.pageToken)} is malformed`, [
        { field: 'page_token', description: 'Must be the next_page_token of a previous response' },
      ]);
    }
  }
  const filter = (request.filter ?? '').replace(/\s+/g, '');
  if (filter !== '' && filter !== 'done=true' && filter !== 'done=false') {
    throw StatusError.invalidArgument(`Failed to list operations: filter ${JSON.stringify(request.filter)} is not supported`, [
      { field: 'filter', description: 'Must be empty, "done=true" or "done=false"' },
    ]);
  }
  const instanceName = request.allInstances ? undefined : parseOperationsCollection(request.name);
  return { afterSeq, instanceName, pageSize, ...(filter ? { done: filter === 'done=true' } : {}) };
}

/** One ListOperations page from an in-memory table. */
export function listPage(table: InMemoryOperationTable, query: ListQuery): ListOperationsResult {
  const operations: OperationSnapshot[] = [];
  let nextPageToken = '';
  let lastSeq = query.afterSeq;
  for (const entry of table.list(query.afterSeq, query.instanceName)) {
    const snapshot = snapshotOf(entry);
    if (query.done !== undefined && (snapshot.stage === 'COMPLETED') !== query.done) continue;
    if (operations.length === query.pageSize) {
      // There is at least one more: the next page starts after the last one returned.
      nextPageToken = String(lastSeq);
      break;
    }
    operations.push(snapshot);
    lastSeq = entry.seq;
  }
  return { operations, nextPageToken };
}

/**
 * Where the build queue's state survives the process: a journal of operations and executions that
 * the coordinator writes through on every state change and reads back once at start.
 *
 * Why a journal and not the rooms themselves: the coordinator's invariants (state changes and
 * follower wake-ups in one event-loop turn) hold only over synchronous rooms. The live rooms stay in
 * memory (operation table, execution queue, worker registry); what must outlive a crash is written
 * here synchronously (better-sqlite3 is synchronous), one transaction per state change, so that a
 * restarted scheduler rebuilds the same rooms. What is process-local by nature (followers, held
 * polls, a worker's open calls) is not written: workers and followers come back on their own.
 *
 * `memory` keeps only the queued Actions, in temporary files (SpoolStateStore); `sqlite:PATH` is
 * SqliteStateStore; a queue built without a store (`NO_STATE_STORE`, tests) keeps them on the heap.
 */
import type { Digest } from '../digest/digest.js';
import type { reapi } from '../proto/index.js';
import type { LoadedAction } from './load-action.js';
import type { PlatformProperties } from './platform-properties.js';

/** An operation as written: the execution it follows is referenced by the execution's `seq`. */
export interface StoredOperation {
  name: string;
  seq: number;
  actionDigest: Digest;
  executionSeq?: number;
  ownResponse?: reapi.IExecuteResponse;
  completedAtMs?: number;
}

/** An execution as written; `loaded` is read back on demand (`loadAction`), not with the rest. */
export interface StoredExecution {
  seq: number;
  actionDigest: Digest;
  platform: PlatformProperties;
  doNotCache: boolean;
  priority: number;
  queuedAtMs: number;
  stage: 'QUEUED' | 'EXECUTING' | 'COMPLETED';
  attempts: number;
  cancelRequested: boolean;
  /** The current attempt: which task on which worker, and since when. */
  /** The running attempt; `leaseToken` is what its worker must echo in CompleteTask after a restart too. */
  task?: { id: string; workerId: string; startedAtMs: number; leaseToken: string };
  timeoutMs?: number;
  response?: reapi.IExecuteResponse;
  /** Read back only: the encoded size of the Action and Command kept with it (LoadedAction.sizeBytes). */
  queuedBytes?: number;
}

export interface SchedulerStateStore {
  /** Whether anything outlives the process (false for `memory`). */
  readonly durable: boolean;
  /**
   * Whether it keeps the Action and Command of a queued execution (`putExecution(…, loaded)`) until
   * `loadAction` asks for them, so that the coordinator drops its decoded copy.
   */
  readonly holdsActions: boolean;
  /** Everything written before, for the coordinator to rebuild its rooms. */
  load(): { operations: StoredOperation[]; executions: StoredExecution[] };
  /** Runs `fn` as one transaction: every write inside lands together or not at all. */
  transaction(fn: () => void): void;
  putOperation(operation: StoredOperation): void;
  deleteOperation(name: string): void;
  /** Writes an execution; `loaded` (the decoded Action, Command and inputs) only when given. */
  putExecution(execution: StoredExecution, loaded?: LoadedAction): void;
  /** The Action, Command and inputs written with an execution; undefined once it completed. */
  loadAction(seq: number): LoadedAction | undefined;
  /** Forgets an execution no operation follows any more. */
  deleteExecution(seq: number): void;
  close(): void;
}

/** `memory`: the rooms are the only state; nothing is written and nothing is loaded. */
export const NO_STATE_STORE: SchedulerStateStore = {
  durable: false,
  holdsActions: false,
  load: () => ({ operations: [], executions: [] }),
  transaction: (fn) => fn(),
  putOperation: () => {},
  deleteOperation: () => {},
  putExecution: () => {},
  loadAction: () => undefined,
  deleteExecution: () => {},
  close: () => {},
};

/** A parsed `scheduler.state` setting (`redis://` is not a journal: it selects RedisBuildQueue). */
export type StateSpec = { kind: 'memory' } | { kind: 'sqlite'; path: string } | { kind: 'redis'; url: string };

/** Parses `memory`, `sqlite:PATH` or `redis://…`; undefined for anything else. */
export function parseStateSpec(text: string): StateSpec | undefined {
  if (text === 'memory') return { kind: 'memory' };
  if (text.startsWith('redis://')) return { kind: 'redis', url: text };
  if (text.startsWith('sqlite:') && text.length > 'sqlite:'.length) return { kind: 'sqlite', path: text.slice('sqlite:'.length) };
  return undefined;
}

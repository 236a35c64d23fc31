/**
 * The scheduler's journal in one SQLite file (better-sqlite3, synchronous): the default state of
 * `serve all` and `serve scheduler`, so that a scheduler killed with SIGKILL restarts with every
 * operation it had named, its queue and its leases.
 *
 * - WAL mode with `synchronous=NORMAL`: a committed transaction survives the process being killed
 *   (the WAL is in the OS's page cache); after a power loss the last few may be lost.
 * - `locking_mode=EXCLUSIVE`: the first transaction takes the file's lock and keeps it until the
 *   connection closes (or the process dies), so a second scheduler on the same file is refused at
 *   start instead of corrupting the first one's queue.
 * - The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i+1.
 * - Queued Actions and Commands are kept here, encoded, not in memory: the coordinator reads them
 *   back when it hands the execution to a worker.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { StatusError } from '../errors/status-error.js';
import type { LoadedAction } from './load-action.js';
import { decodeLoaded, decodeResponse, digestFromText, digestText, encodeLoaded, encodeResponse, platformFromText, platformText } from './state-codec.js';
import type { SchedulerStateStore, StoredExecution, StoredOperation } from './state-store.js';

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE operations (
     name TEXT PRIMARY KEY,
     seq INTEGER NOT NULL UNIQUE,
     action_digest TEXT NOT NULL,
     execution_seq INTEGER,
     own_response BLOB,
     completed_at_ms INTEGER
   );
   CREATE INDEX operations_by_completion ON operations (completed_at_ms) WHERE completed_at_ms IS NOT NULL;
   CREATE TABLE executions (
     seq INTEGER PRIMARY KEY,
     action_digest TEXT NOT NULL,
     platform TEXT NOT NULL,
     do_not_cache INTEGER NOT NULL,
     priority INTEGER NOT NULL,
     queued_at_ms INTEGER NOT NULL,
     stage TEXT NOT NULL,
     attempts INTEGER NOT NULL,
     cancel_requested INTEGER NOT NULL,
     task_id TEXT,
     worker_id TEXT,
     task_started_at_ms INTEGER,
     timeout_ms INTEGER,
     response BLOB,
     loaded BLOB
   );`,
  // 2: the running attempt's lease token, which its worker echoes in CompleteTask (also after a restart).
  `ALTER TABLE executions ADD COLUMN task_lease_token TEXT;`,
];

interface ExecutionRow {
  seq: number;
  action_digest: string;
  platform: string;
  do_not_cache: number;
  priority: number;
  queued_at_ms: number;
  stage: StoredExecution['stage'];
  attempts: number;
  cancel_requested: number;
  task_id: string | null;
  worker_id: string | null;
  task_started_at_ms: number | null;
  task_lease_token: string | null;
  timeout_ms: number | null;
  response: Buffer | null;
  loaded_bytes?: number | null;
}

interface OperationRow {
  name: string;
  seq: number;
  action_digest: string;
  execution_seq: number | null;
  own_response: Buffer | null;
  completed_at_ms: number | null;
}

export class SqliteStateStore implements SchedulerStateStore {
  readonly durable = true;
  readonly holdsActions = true;
  private readonly db: Database.Database;
  private readonly stmts: ReturnType<typeof prepare>;

  /** Opens (creating if needed) and locks the file; FAILED_PRECONDITION when another process holds it. */
  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path, { timeout: 0 });
    try {
      this.db.pragma('locking_mode = EXCLUSIVE');
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.migrate();
    } catch (err) {
      this.db.close();
      if ((err as { code?: string }).code === 'SQLITE_BUSY') {
        throw StatusError.failedPrecondition(
          'Failed to open the scheduler state: its SQLite file is in use by another bzutil scheduler; stop that one, or give this one its own file (--state, --storage_dir or --data_dir)',
        );
      }
      throw err;
    }
    this.stmts = prepare(this.db);
  }

  /** The schema version this build writes. */
  static readonly schemaVersion = MIGRATIONS.length;

  load(): { operations: StoredOperation[]; executions: StoredExecution[] } {
    // Not the queued Actions themselves (read back one at a time when handed out): only their size.
    const executions = (this.db.prepare(`SELECT ${EXECUTION_COLUMNS}, length(loaded) AS loaded_bytes FROM executions ORDER BY seq`).all() as ExecutionRow[]).map(executionFromRow);
    const operations = (this.db.prepare('SELECT * FROM operations ORDER BY seq').all() as OperationRow[]).map(operationFromRow);
    return { operations, executions };
  }

  transaction(fn: () => void): void {
    this.db.transaction(fn)();
  }

  putOperation(op: StoredOperation): void {
    this.stmts.putOperation.run({
      name: op.name,
      seq: op.seq,
      action_digest: digestText(op.actionDigest),
      execution_seq: op.executionSeq ?? null,
      own_response: op.ownResponse ? encodeResponse(op.ownResponse) : null,
      completed_at_ms: op.completedAtMs ?? null,
    });
  }

  deleteOperation(name: string): void {
    this.stmts.deleteOperation.run(name);
  }

  putExecution(e: StoredExecution, loaded?: LoadedAction): void {
    const row = {
      seq: e.seq,
      action_digest: digestText(e.actionDigest),
      platform: platformText(e.platform),
      do_not_cache: e.doNotCache ? 1 : 0,
      priority: e.priority,
      queued_at_ms: e.queuedAtMs,
      stage: e.stage,
      attempts: e.attempts,
      cancel_requested: e.cancelRequested ? 1 : 0,
      task_id: e.task?.id ?? null,
      worker_id: e.task?.workerId ?? null,
      task_started_at_ms: e.task?.startedAtMs ?? null,
      task_lease_token: e.task?.leaseToken ?? null,
      timeout_ms: e.timeoutMs ?? null,
      response: e.response ? encodeResponse(e.response) : null,
    };
    if (loaded) this.stmts.insertExecution.run({ ...row, loaded: encodeLoaded(loaded) });
    else this.stmts.updateExecution.run(row);
  }

  loadAction(seq: number): LoadedAction | undefined {
    const row = this.stmts.loadAction.get(seq) as { loaded: Buffer | null; platform: string } | undefined;
    if (!row?.loaded) return undefined;
    return decodeLoaded(row.loaded, platformFromText(row.platform));
  }

  deleteExecution(seq: number): void {
    this.stmts.deleteExecution.run(seq);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private migrate(): void {
    // Takes the exclusive lock (held from here on) and brings the schema up to date in one go.
    this.db.transaction(() => {
      const version = this.db.pragma('user_version', { simple: true }) as number;
      if (version > MIGRATIONS.length) {
        throw StatusError.failedPrecondition(`Failed to open the scheduler state: schema version ${version} is newer than this bzutil (${MIGRATIONS.length})`);
      }
      for (let v = version; v < MIGRATIONS.length; v++) this.db.exec(MIGRATIONS[v]!);
      this.db.pragma(`user_version = ${MIGRATIONS.length}`);
    }).exclusive();
  }
}

const EXECUTION_COLUMNS =
  'seq, action_digest, platform, do_not_cache, priority, queued_at_ms, stage, attempts, cancel_requested, task_id, worker_id, task_started_at_ms, task_lease_token, timeout_ms, response';

function prepare(db: Database.Database) {
  const executionColumns = EXECUTION_COLUMNS;
  const values = executionColumns
    .split(', ')
    .map((c) => `@${c}`)
    .join(', ');
  const updates = executionColumns
    .split(', ')
    .slice(1)
    .map((c) => `${c} = excluded.${c}`)
    .join(', ');
  return {
    putOperation: db.prepare(
      `INSERT INTO operations (name, seq, action_digest, execution_seq, own_response, completed_at_ms)
       VALUES (@name, @seq, @action_digest, @execution_seq, @own_response, @completed_at_ms)
       ON CONFLICT (name) DO UPDATE SET execution_seq = excluded.execution_seq, own_response = excluded.own_response, completed_at_ms = excluded.completed_at_ms`,
    ),
    deleteOperation: db.prepare('DELETE FROM operations WHERE name = ?'),
    insertExecution: db.prepare(
      `INSERT INTO executions (${executionColumns}, loaded) VALUES (${values}, @loaded) ON CONFLICT (seq) DO UPDATE SET ${updates}, loaded = excluded.loaded`,
    ),
    // A completed execution needs its Action no more.
    updateExecution: db.prepare(
      `INSERT INTO executions (${executionColumns}) VALUES (${values})
       ON CONFLICT (seq) DO UPDATE SET ${updates}, loaded = CASE WHEN excluded.stage = 'COMPLETED' THEN NULL ELSE loaded END`,
    ),
    loadAction: db.prepare('SELECT loaded, platform FROM executions WHERE seq = ?'),
    deleteExecution: db.prepare('DELETE FROM executions WHERE seq = ?'),
  };
}

function executionFromRow(row: ExecutionRow): StoredExecution {
  return {
    seq: row.seq,
    actionDigest: digestFromText(row.action_digest),
    platform: platformFromText(row.platform),
    doNotCache: row.do_not_cache === 1,
    priority: row.priority,
    queuedAtMs: row.queued_at_ms,
    stage: row.stage,
    attempts: row.attempts,
    cancelRequested: row.cancel_requested === 1,
    ...(row.task_id && row.worker_id ? { task: { id: row.task_id, workerId: row.worker_id, startedAtMs: row.task_started_at_ms ?? 0, leaseToken: row.task_lease_token ?? '' } } : {}),
    ...(row.timeout_ms !== null ? { timeoutMs: row.timeout_ms } : {}),
    ...(row.response ? { response: decodeResponse(row.response) } : {}),
    ...(row.loaded_bytes ? { queuedBytes: row.loaded_bytes } : {}),
  };
}

function operationFromRow(row: OperationRow): StoredOperation {
  return {
    name: row.name,
    seq: row.seq,
    actionDigest: digestFromText(row.action_digest),
    ...(row.execution_seq !== null ? { executionSeq: row.execution_seq } : {}),
    ...(row.own_response ? { ownResponse: decodeResponse(row.own_response) } : {}),
    ...(row.completed_at_ms !== null ? { completedAtMs: row.completed_at_ms } : {}),
  };
}

/**
 * Live logs on the scheduler: the stdout and stderr of running actions, as workers append them
 * (WorkerQueue.AppendLogs), kept as a bounded tail per stream for ByteStream readers of the names in
 * ExecuteOperationMetadata (`<operation>/logs/stdout`, `…/stderr`).
 *
 * Streams are keyed by the operation name a task carries (Task.operation_name, the execution's first
 * operation; an Execute that joined a running identical action is given the same stream names).
 * Only the worker holding a task's lease may append to its streams: tasks are registered as they
 * are handed out, with their lease token. Memory is bounded three ways: each stream keeps its last
 * `tailBytes`; ended streams are forgotten after `keepEndedMs` or beyond `maxEnded`; and the whole
 * store holds at most `maxTotalBytes`, evicting ended then least recently written streams.
 */
import { StatusError } from '../errors/status-error.js';
import type { workerapi } from '../proto/index.js';
import { type Clock, systemClock } from '../util/clock.js';
import { type OperationName, parseOperationName } from './operation-names.js';
import { sameToken } from './worker-admission.js';

export type LogStreamKind = 'stdout' | 'stderr';

const SUFFIX = /\/logs\/(stdout|stderr)$/;

/** `<operation name>/logs/<stream>`: the ByteStream resource name of an operation's live stream. */
export function logStreamName(operationName: string, stream: LogStreamKind): string {
  return `${operationName}/logs/${stream}`;
}

/**
 * The operation and stream a log stream name names, or undefined when `resourceName` is not of that
 * form (a blob name, say). A malformed operation part is INVALID_ARGUMENT.
 */
export function parseLogStreamName(resourceName: string): { operation: OperationName; stream: LogStreamKind } | undefined {
  const m = SUFFIX.exec(resourceName);
  if (!m) return undefined;
  return { operation: parseOperationName(resourceName.slice(0, m.index), 'resource_name'), stream: m[1] as LogStreamKind };
}

/** The last bytes of one stream: chunks from `start` to `end` (offsets in the whole stream). */
class StreamTail {
  private chunks: Buffer[] = [];
  start = 0;
  end = 0;

  constructor(private readonly maxBytes: number) {}

  get size(): number {
    return this.end - this.start;
  }

  /** Adds `data` written at `offset`; returns the change in bytes held. */
  append(offset: number, data: Uint8Array): number {
    const before = this.size;
    let bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (offset > this.end) {
      // The worker skipped output (it fell behind): the tail restarts at the new offset.
      this.chunks = [];
      this.start = this.end = offset;
    } else if (offset < this.end) {
      bytes = bytes.subarray(Math.min(bytes.length, this.end - offset));
    }
    if (bytes.length > 0) {
      this.chunks.push(Buffer.from(bytes)); // a copy: the request's buffer is not ours to keep
      this.end += bytes.length;
    }
    this.trim(this.maxBytes);
    return this.size - before;
  }

  /** Drops bytes from the front until at most `maxBytes` remain. */
  trim(maxBytes: number): void {
    while (this.size > maxBytes && this.chunks.length > 0) {
      const first = this.chunks[0]!;
      const excess = this.size - maxBytes;
      if (first.length <= excess) {
        this.chunks.shift();
        this.start += first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.start += excess;
      }
    }
  }

  /** Up to `max` bytes from `offset` (clamped to what is held); empty when there is nothing new. */
  readFrom(offset: number, max: number): { data: Buffer; offset: number } {
    let at = Math.max(offset, this.start);
    const out: Buffer[] = [];
    let pos = this.start;
    let taken = 0;
    for (const chunk of this.chunks) {
      const chunkEnd = pos + chunk.length;
      if (chunkEnd > at && taken < max) {
        const piece = chunk.subarray(at - pos, Math.min(chunk.length, at - pos + (max - taken)));
        out.push(piece);
        taken += piece.length;
        at += piece.length;
      }
      pos = chunkEnd;
    }
    return { data: Buffer.concat(out), offset: Math.max(offset, this.start) };
  }
}

/** The two streams of one operation. */
export class OperationLogs {
  readonly stdout: StreamTail;
  readonly stderr: StreamTail;
  ended = false;
  endedAtMs = 0;
  lastWriteMs: number;
  /** The task whose worker may append (the current attempt). */
  task?: { id: string; workerId: string; leaseToken: string };
  private waiters = new Set<() => void>();

  constructor(tailBytes: number, now: number) {
    this.stdout = new StreamTail(tailBytes);
    this.stderr = new StreamTail(tailBytes);
    this.lastWriteMs = now;
  }

  get size(): number {
    return this.stdout.size + this.stderr.size;
  }

  stream(kind: LogStreamKind): StreamTail {
    return kind === 'stdout' ? this.stdout : this.stderr;
  }

  /** Resolves at the next append or end, or after `timeoutMs`. */
  changed(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
    });
  }

  wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

export interface LogStreamsOptions {
  /** Bytes kept per stream. @default 1 MiB */
  tailBytes?: number;
  /** How long an ended stream stays readable. @default 60 s */
  keepEndedMs?: number;
  /** Most ended operations kept. @default 256 */
  maxEnded?: number;
  /** Most bytes held over all streams. @default 256 MiB */
  maxTotalBytes?: number;
  clock?: Clock;
}

/** Largest chunk an AppendLogs request may carry (the worker sends 64 KiB). */
const MAX_CHUNK_BYTES = 1024 * 1024;

export class LogStreams {
  private readonly byOperation = new Map<string, OperationLogs>();
  private readonly operationOfTask = new Map<string, string>();
  private readonly tailBytes: number;
  private readonly keepEndedMs: number;
  private readonly maxEnded: number;
  private readonly maxTotalBytes: number;
  private readonly clock: Clock;
  private totalBytes = 0;

  constructor(opts: LogStreamsOptions = {}) {
    this.tailBytes = opts.tailBytes ?? 1024 * 1024;
    this.keepEndedMs = opts.keepEndedMs ?? 60_000;
    this.maxEnded = opts.maxEnded ?? 256;
    this.maxTotalBytes = opts.maxTotalBytes ?? 256 * 1024 * 1024;
    this.clock = opts.clock ?? systemClock;
  }

  /** A task was handed to `workerId`: its worker may now append to the operation's streams. */
  taskAssigned(task: workerapi.ITask, workerId: string): void {
    const operationName = task.operationName ?? '';
    const taskId = task.taskId ?? '';
    if (!operationName || !taskId) return;
    let logs = this.byOperation.get(operationName);
    if (!logs || logs.ended) {
      if (logs) this.forget(operationName);
      logs = new OperationLogs(this.tailBytes, this.clock.now());
      this.byOperation.set(operationName, logs);
    }
    if (logs.task) this.operationOfTask.delete(logs.task.id);
    logs.task = { id: taskId, workerId, leaseToken: task.leaseToken ?? '' };
    this.operationOfTask.set(taskId, operationName);
    this.prune();
  }

  /** Appends a worker's output; NOT_FOUND for a task not running here, PERMISSION_DENIED for another worker's. */
  append(request: workerapi.IAppendLogsRequest): void {
    const taskId = request.taskId ?? '';
    const operationName = this.operationOfTask.get(taskId);
    const logs = operationName === undefined ? undefined : this.byOperation.get(operationName);
    if (!logs?.task || logs.task.id !== taskId || logs.ended) throw StatusError.notFound(`Failed to append logs: task ${JSON.stringify(taskId)} is not running on this scheduler`);
    if (request.workerId !== logs.task.workerId || !sameToken(request.leaseToken ?? '', logs.task.leaseToken)) {
      throw StatusError.permissionDenied(`Failed to append logs of task ${JSON.stringify(taskId)}: the caller does not hold its lease`);
    }
    for (const chunk of request.chunks ?? []) {
      const data = chunk.data ?? new Uint8Array();
      if (data.length > MAX_CHUNK_BYTES) throw StatusError.invalidArgument(`Failed to append logs: a chunk of ${data.length} bytes is larger than ${MAX_CHUNK_BYTES}`);
      const kind: LogStreamKind = chunk.stream === 1 ? 'stderr' : 'stdout';
      this.totalBytes += logs.stream(kind).append(Number(chunk.offset ?? 0), data);
    }
    logs.lastWriteMs = this.clock.now();
    logs.wake();
    if (this.totalBytes > this.maxTotalBytes) this.prune();
  }

  /** The task is over (its result was handed in): its streams end; readers finish what is left. */
  taskEnded(taskId: string): void {
    const operationName = this.operationOfTask.get(taskId);
    if (operationName === undefined) return;
    this.operationOfTask.delete(taskId);
    const logs = this.byOperation.get(operationName);
    if (!logs || logs.task?.id !== taskId) return;
    logs.ended = true;
    logs.endedAtMs = this.clock.now();
    logs.wake();
    this.prune();
  }

  get(operationName: string): OperationLogs | undefined {
    return this.byOperation.get(operationName);
  }

  /** Bytes held over all streams (for tests and metrics). */
  get heldBytes(): number {
    return this.totalBytes;
  }

  private forget(operationName: string): void {
    const logs = this.byOperation.get(operationName);
    if (!logs) return;
    this.byOperation.delete(operationName);
    if (logs.task) this.operationOfTask.delete(logs.task.id);
    this.totalBytes -= logs.size;
    logs.ended = true;
    logs.wake();
  }

  private prune(): void {
    const now = this.clock.now();
    const ended = [...this.byOperation].filter(([, l]) => l.ended).sort((a, b) => a[1].endedAtMs - b[1].endedAtMs);
    ended.forEach(([name, logs], i) => {
      if (now - logs.endedAtMs > this.keepEndedMs || ended.length - i > this.maxEnded) this.forget(name);
    });
    if (this.totalBytes <= this.maxTotalBytes) return;
    // Over budget: ended streams go first, then the least recently written.
    const victims = [...this.byOperation].sort((a, b) => Number(b[1].ended) - Number(a[1].ended) || a[1].lastWriteMs - b[1].lastWriteMs);
    for (const [name] of victims) {
      if (this.totalBytes <= this.maxTotalBytes) break;
      this.forget(name);
    }
  }
}

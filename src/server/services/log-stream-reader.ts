/**
 * ByteStream Read of a live log stream name (`<operation>/logs/stdout|stderr`, as
 * ExecuteOperationMetadata names them) on the scheduler's port: the bytes from `read_offset` as the
 * worker produces them, ending when the action ends. While the stream is live it is read from
 * LogStreams (a bounded tail: an offset older than the tail starts at its oldest byte); once the
 * operation is done and its live stream forgotten (or it never ran here: a cache hit, another
 * scheduler of a fleet), the ActionResult's stdout/stderr are read instead. An operation this
 * scheduler does not know is NOT_FOUND, so a name that never existed is NOT_FOUND.
 */
import type { BlobStore } from '../../lib/blobstore/blob-store.js';
import { Digest } from '../../lib/digest/digest.js';
import { StatusError } from '../../lib/errors/status-error.js';
import type { BuildQueue } from '../../lib/scheduler/build-queue.js';
import { type LogStreamKind, type LogStreams, parseLogStreamName } from '../../lib/scheduler/log-streams.js';
import type { OperationSnapshot } from '../../lib/scheduler/operation-snapshot.js';
import { type Clock, systemClock } from '../../lib/util/clock.js';

/** The bytes of a log stream name, or undefined when `resourceName` is not one (a blob name). */
export type LogStreamReader = (resourceName: string, opts: { offset: number; limit: number; signal?: AbortSignal }) => AsyncIterable<Uint8Array> | undefined;

export interface LogStreamReaderDeps {
  logStreams: LogStreams;
  buildQueue: BuildQueue;
  contentAddressableStorage: BlobStore;
  /** How often a reader waiting for output checks whether the operation ended. @default 1 s */
  pollMs?: number;
  clock?: Clock;
}

/** Largest message of a live read. */
const MAX_READ_BYTES = 64 * 1024;

export function createLogStreamReader(deps: LogStreamReaderDeps): LogStreamReader {
  const pollMs = deps.pollMs ?? 1000;
  const clock = deps.clock ?? systemClock;
  return (resourceName, opts) => {
    const parsed = parseLogStreamName(resourceName);
    if (!parsed) return undefined;
    if (opts.offset < 0) throw StatusError.outOfRange(`Failed to read log stream: read_offset ${opts.offset} is negative`);
    if (opts.limit < 0) throw StatusError.invalidArgument(`Failed to read log stream: read_limit ${opts.limit} is negative`, [{ field: 'read_limit', description: 'Must not be negative' }]);
    return follow(parsed.operation.name, parsed.stream, opts);
  };

  async function* follow(operationName: string, kind: LogStreamKind, opts: { offset: number; limit: number; signal?: AbortSignal }): AsyncGenerator<Uint8Array> {
    let remaining = opts.limit || Number.POSITIVE_INFINITY;
    let position = opts.offset;
    let snapshot = await deps.buildQueue.getOperation(operationName); // NOT_FOUND for a name that never existed
    for (;;) {
      if (opts.signal?.aborted) throw StatusError.cancelled('Log stream read was cancelled');
      const logs = deps.logStreams.get(operationName);
      if (!logs) {
        if (snapshot.stage === 'COMPLETED') {
          yield* finalOutput(snapshot, kind, position, remaining, opts.signal);
          return;
        }
        await clock.sleep(Math.min(pollMs, 250), opts.signal).catch(() => {});
        snapshot = await deps.buildQueue.getOperation(operationName);
        continue;
      }
      const { data, offset } = logs.stream(kind).readFrom(position, Math.min(MAX_READ_BYTES, remaining));
      if (data.length > 0) {
        yield data;
        position = offset + data.length;
        remaining -= data.length;
        if (remaining <= 0) return;
        continue;
      }
      if (logs.ended) return;
      await logs.changed(pollMs, opts.signal);
      // A stream whose worker vanished never ends by itself: the operation's end ends it.
      const now = await deps.buildQueue.getOperation(operationName);
      if (now.stage === 'COMPLETED' && !logs.ended) {
        const rest = logs.stream(kind).readFrom(position, remaining === Number.POSITIVE_INFINITY ? Number.MAX_SAFE_INTEGER : remaining);
        if (rest.data.length > 0) yield rest.data;
        return;
      }
    }
  }

  /** The stream as the ActionResult recorded it (inline bytes or a CAS blob), from `offset`. */
  async function* finalOutput(snapshot: OperationSnapshot, kind: LogStreamKind, offset: number, limit: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const result = snapshot.response?.result;
    if (!result) return;
    const raw = kind === 'stdout' ? result.stdoutRaw : result.stderrRaw;
    const digest = kind === 'stdout' ? result.stdoutDigest : result.stderrDigest;
    if (raw && raw.length > 0) {
      const slice = raw.subarray(offset, limit === Number.POSITIVE_INFINITY ? undefined : offset + limit);
      if (slice.length > 0) yield slice;
      return;
    }
    if (!digest?.hash) return;
    const d = Digest.create(snapshot.actionDigest.instanceName, snapshot.actionDigest.digestFunction, digest.hash, Number(digest.sizeBytes ?? 0));
    if (offset >= d.sizeBytes) return;
    yield* deps.contentAddressableStorage.read(d, { offset, limit: limit === Number.POSITIVE_INFINITY ? undefined : limit, signal });
  }
}

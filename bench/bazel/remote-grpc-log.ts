/**
 * Reads the file Bazel writes with `--experimental_remote_grpc_log=FILE`: one length-delimited
 * `remote_logging.LogEntry` per RPC the client made (Bazel 4.2.3: `writeDelimitedTo`). Only the
 * fields the B2 profile needs are declared, in a schema of our own below, and decoded with
 * protobufjs reflection; protobuf skips every other field (the request and response details).
 */
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';

/**
 * The subset of Bazel's LogEntry we read, with the field numbers Bazel 4.2.3 writes (checked
 * against a log it wrote, field by field): the REAPI RequestMetadata the call carried (which action
 * it was for), its gRPC status, the full method name
 * ("build.bazel.remote.execution.v2.ActionCache/GetActionResult"), and when the call started and
 * ended at the client (client-side queueing, transport and decoding included). Bazel takes both
 * times from its millisecond clock, so every duration is a whole number of milliseconds.
 */
const SCHEMA = `
syntax = "proto3";
package bzutil_bench;
message Timestamp { int64 seconds = 1; int32 nanos = 2; }
message Status { int32 code = 1; }
message RequestMetadata { string action_id = 2; string action_mnemonic = 5; }
message LogEntry {
  RequestMetadata metadata = 1;
  Status status = 2;
  string method_name = 3;
  Timestamp start_time = 5;
  Timestamp end_time = 6;
}
`;

const LogEntryType = protobuf.parse(SCHEMA, { keepCase: true }).root.lookupType('bzutil_bench.LogEntry');

/** One RPC as Bazel saw it. */
export interface ClientRpc {
  /** `Service.Method` with the package dropped, as the server names it: `ActionCache.GetActionResult`. */
  method: string;
  /** Milliseconds since the epoch. */
  startMs: number;
  endMs: number;
  /** gRPC status code (0 = OK). */
  code: number;
  /** RequestMetadata.action_id: the action the call was made for ('' when none). */
  actionId: string;
}

interface Timestamp {
  seconds?: number | { toNumber(): number };
  nanos?: number;
}
interface DecodedEntry {
  start_time?: Timestamp;
  end_time?: Timestamp;
  status?: { code?: number };
  metadata?: { action_id?: string };
  method_name?: string;
}

const toMs = (t: Timestamp | undefined): number => {
  if (!t) return NaN;
  const seconds = typeof t.seconds === 'object' ? t.seconds.toNumber() : (t.seconds ?? 0);
  return seconds * 1000 + (t.nanos ?? 0) / 1e6;
};

/** `build.bazel.remote.execution.v2.ActionCache/GetActionResult` -> `ActionCache.GetActionResult`. */
export function shortMethodName(fullName: string): string {
  const slash = fullName.lastIndexOf('/');
  const service = fullName.slice(0, slash);
  return `${service.slice(service.lastIndexOf('.') + 1)}.${fullName.slice(slash + 1)}`;
}

/** Decodes a whole log (the concatenated length-delimited entries). */
export function decodeRemoteGrpcLog(data: Uint8Array): ClientRpc[] {
  const reader = protobuf.Reader.create(data);
  const out: ClientRpc[] = [];
  while (reader.pos < reader.len) {
    const e = LogEntryType.decodeDelimited(reader) as unknown as DecodedEntry;
    out.push({
      method: shortMethodName(e.method_name ?? ''),
      startMs: toMs(e.start_time),
      endMs: toMs(e.end_time),
      code: e.status?.code ?? 0,
      actionId: e.metadata?.action_id ?? '',
    });
  }
  return out;
}

export function readRemoteGrpcLog(path: string): ClientRpc[] {
  return decodeRemoteGrpcLog(readFileSync(path));
}

/** Encodes entries in Bazel's layout (tests write a log the way Bazel does). */
export function encodeRemoteGrpcLogEntry(entry: { fullMethodName: string; startMs: number; endMs: number; code?: number; actionId?: string }): Uint8Array {
  const ts = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: Math.round((ms - Math.floor(ms / 1000) * 1000) * 1e6) });
  const message = LogEntryType.fromObject({
    start_time: ts(entry.startMs),
    end_time: ts(entry.endMs),
    ...(entry.code ? { status: { code: entry.code } } : {}),
    metadata: { action_id: entry.actionId ?? '' },
    method_name: entry.fullMethodName,
  });
  return LogEntryType.encodeDelimited(message).finish();
}

/**
 * Opening a connection for a client command and checking it with one first call: GetCapabilities,
 * a single attempt under a connect deadline (at most 10 s, less when `--rpc_timeout` is shorter).
 * A server that cannot be reached, or that accepts the connection and never answers, fails here with
 * UNAVAILABLE or DEADLINE_EXCEEDED and a message naming the address and the time spent, instead of
 * each later call retrying into a long hang. The check also refuses a digest function the server
 * does not advertise, before any data is sent.
 */
import { type ClientTlsFiles, RemoteConnection } from '../client/connection.js';
import type { DigestFunction } from '../digest/digest-function.js';
import { digestFunctionFromProto } from '../digest/digest-function.js';
import { Code, StatusError, hasCode, toStatusError } from '../errors/status-error.js';
import type { reapi } from '../proto/index.js';
import { capabilitiesService } from '../proto/services.js';
import { DEFAULT_CAS_ADDRESS, DEFAULT_SCHEDULER_ADDRESS } from './flags.js';
import { usageError } from './exit-codes.js';

/** The connect deadline: how long the first call may take before the server counts as unreachable. */
export const CONNECT_DEADLINE_MS = 10_000;

export interface ConnectOptions {
  /** What the address is, for messages: "the CAS", "the scheduler". */
  what: string;
  /** The flag that gave the address, for messages: "--cas". */
  flag: string;
  instanceName: string;
  digestFunction: DigestFunction;
  /** `--rpc_timeout` in ms; Infinity for none. */
  rpcTimeoutMs: number;
  /** `--tls_ca`, `--tls_cert`, `--tls_key`. */
  tls?: ClientTlsFiles;
  /** Sent with every call: `authorization` from `--token`. */
  metadata?: Record<string, string>;
}

/** A checked connection and what the server advertised (undefined when it has no Capabilities service). */
export interface CheckedConnection {
  connection: RemoteConnection;
  capabilities?: reapi.IServerCapabilities;
}

/**
 * Opens `address` (a malformed one is a usage error) and makes the first call. The caller owns the
 * connection and closes it, also when this throws (`onOpen` hands it over before the check).
 */
export async function connectChecked(address: string, opts: ConnectOptions, onOpen: (c: RemoteConnection) => void): Promise<CheckedConnection> {
  let connection: RemoteConnection;
  try {
    connection = new RemoteConnection(address, { defaultDeadlineMs: opts.rpcTimeoutMs, tls: opts.tls, metadata: opts.metadata });
  } catch (err) {
    throw usageError(`Invalid ${opts.flag}: ${toStatusError(err).message}`, err);
  }
  onOpen(connection);
  const deadlineMs = Math.min(CONNECT_DEADLINE_MS, opts.rpcTimeoutMs);
  const started = performance.now();
  let capabilities: reapi.IServerCapabilities;
  try {
    // One attempt: retrying a server that accepts and never answers is what used to take 51 s.
    capabilities = await connection.unary(capabilitiesService.getCapabilities, { instanceName: opts.instanceName }, { deadlineMs });
  } catch (err) {
    // A server without the Capabilities service is still a server.
    if (hasCode(err, Code.UNIMPLEMENTED)) return { connection };
    throw unreachable(err, address, opts, performance.now() - started, deadlineMs);
  }
  checkDigestFunction(capabilities, address, opts);
  return { connection, capabilities };
}

function unreachable(err: unknown, address: string, opts: ConnectOptions, elapsedMs: number, deadlineMs: number): StatusError {
  const s = toStatusError(err);
  const elapsed = `${(elapsedMs / 1000).toFixed(1)}s`;
  const why = hasCode(s, Code.DEADLINE_EXCEEDED) ? `no answer within ${(deadlineMs / 1000).toFixed(1)}s (gave up after ${elapsed})` : `${s.message} (after ${elapsed})`;
  const isDefault = address === DEFAULT_CAS_ADDRESS || address === DEFAULT_SCHEDULER_ADDRESS;
  const hint = hasCode(s, Code.UNAVAILABLE) && isDefault ? '; is a server running? Start one with: bzutil serve all' : '';
  return new StatusError(s.code, `Failed to reach ${opts.what} at ${address}: ${why}${hint}`, s.details, { cause: err });
}

/** Refuses a digest function the server does not advertise, listing the ones it does. */
function checkDigestFunction(capabilities: reapi.IServerCapabilities, address: string, opts: ConnectOptions): void {
  const advertised = new Set<DigestFunction>();
  for (const v of capabilities.cacheCapabilities?.digestFunctions ?? []) {
    const fn = digestFunctionFromProto(v);
    if (fn) advertised.add(fn);
  }
  const execFn = digestFunctionFromProto(capabilities.executionCapabilities?.digestFunction);
  if (execFn) advertised.add(execFn);
  // Servers older than REAPI 2.3 may advertise nothing; then only the request can tell.
  if (advertised.size === 0 || advertised.has(opts.digestFunction)) return;
  throw usageError(`Invalid --digest_function ${opts.digestFunction}: ${opts.what} at ${address} supports ${[...advertised].join(', ')}`);
}

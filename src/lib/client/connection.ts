/**
 * One gRPC channel to one bzutil (or any REAPI) endpoint, shared by every service client that talks
 * to it. It owns the channel options that must agree with the servers (4 MiB messages: Bazel's
 * limit, keepalive so that idle long-polls survive NATs) and the conversion of grpc-js errors into
 * StatusError, so that code above it only ever sees StatusError with decoded google.rpc details.
 *
 * Calls are typed by the `MethodDefinition`s in `src/lib/proto/services.ts`:
 * `connection.unary(contentAddressableStorageService.findMissingBlobs, request, { deadlineMs })`.
 */
import * as grpc from '@grpc/grpc-js';
import { fromGrpcError } from '../errors/grpc-status.js';
import { StatusError } from '../errors/status-error.js';
import { type DigestFunction, digestFunctionToProto } from '../digest/digest-function.js';
import { reapi } from '../proto/index.js';

/** The largest message bzutil sends; Bazel's Java gRPC rejects anything bigger. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Room for framing and fields around the payload of a 4 MiB message. */
export const MESSAGE_HEADROOM_BYTES = 64 * 1024;
/** HTTP/2 receive window of client connections. */
export const CLIENT_FLOW_CONTROL_WINDOW_BYTES = 8 * 1024 * 1024;

export interface ParsedAddress {
  /** `host:port` as grpc-js wants it (IPv6 hosts in brackets). */
  target: string;
  host: string;
  port: number;
  /** True for `grpcs://`: the channel uses TLS with the system roots. */
  tls: boolean;
}

/**
 * Parses a user-supplied endpoint: `host:port`, `grpc://host:port`, `grpcs://host:port`,
 * `[::1]:port`. Throws INVALID_ARGUMENT naming what is wrong.
 */
export function parseAddress(address: string): ParsedAddress {
  const text = address.trim();
  const fail = (why: string) =>
    StatusError.invalidArgument(`Failed to parse address ${JSON.stringify(address)}: ${why}`, [{ field: 'address', description: why }]);
  if (!text) throw fail('it is empty');
  let rest = text;
  let tls = false;
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(text);
  if (scheme) {
    const name = scheme[1]!.toLowerCase();
    if (name === 'grpcs') tls = true;
    else if (name !== 'grpc') throw fail(`scheme ${JSON.stringify(name)} is not supported (use grpc:// or grpcs://)`);
    rest = text.slice(scheme[0].length);
  }
  rest = rest.replace(/\/+$/, '');
  if (rest.includes('/')) throw fail('it has a path; expected host:port');
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d+)$/.exec(rest);
  if (!m) throw fail('expected host:port, e.g. localhost:12100');
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw fail(`port ${m[2]} is not between 1 and 65535`);
  const host = m[1]!;
  return { target: `${host}:${port}`, host: host.replace(/^\[|\]$/g, ''), port, tls };
}

export interface ConnectionOptions {
  /** Metadata sent with every call, e.g. authorization. Bazel-style RequestMetadata is always added. */
  metadata?: Record<string, string>;
  /** Interval between keepalive pings on an active connection. @default 30000 */
  keepaliveTimeMs?: number;
  /** Name reported in RequestMetadata.tool_details. @default 'bzutil' */
  toolName?: string;
  /** Extra grpc-js channel options (tests). */
  channelOptions?: grpc.ChannelOptions;
  /** grpc-js client interceptors, e.g. to observe calls in tests. */
  interceptors?: grpc.Interceptor[];
  /**
   * Deadline of every call that does not set its own `deadlineMs` (the CLI's `--rpc_timeout`, like
   * Bazel's `--remote_timeout`). Unset or Infinity: no deadline.
   */
  defaultDeadlineMs?: number;
}

export interface RemoteCallOptions {
  /** Cancels the call; it then fails with CANCELLED. */
  signal?: AbortSignal;
  /**
   * Fails the call with DEADLINE_EXCEEDED after this long. Unset: the connection's
   * `defaultDeadlineMs`; Infinity: no deadline.
   */
  deadlineMs?: number;
}

/** A client-streaming call in progress (ByteStream.Write). */
export interface ClientStreamCall<Req, Res> {
  /** Sends one message; resolves once grpc-js can take more (backpressure). */
  write(message: Req): Promise<void>;
  /** Half-closes the stream; the response follows. */
  end(): void;
  /** Settles with the server's response or its error as a StatusError. */
  readonly response: Promise<Res>;
  /** True once the server has answered (possibly before the client finished writing). */
  readonly settled: boolean;
  cancel(): void;
}

/**
 * A channel to one endpoint plus typed calls. Create one per address and share it; `close()` it
 * when done or the process will not exit.
 */
export class RemoteConnection {
  readonly address: string;
  readonly parsed: ParsedAddress;
  private readonly client: grpc.Client;
  private readonly baseMetadata: grpc.Metadata;
  private readonly defaultDeadlineMs: number | undefined;

  constructor(address: string, opts: ConnectionOptions = {}) {
    this.address = address;
    this.defaultDeadlineMs = opts.defaultDeadlineMs;
    this.parsed = parseAddress(address);
    const credentials = this.parsed.tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure();
    this.client = new grpc.Client(this.parsed.target, credentials, {
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES + MESSAGE_HEADROOM_BYTES,
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES + MESSAGE_HEADROOM_BYTES,
      'grpc.keepalive_time_ms': opts.keepaliveTimeMs ?? 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 0,
      // HTTP/2's default 64 KiB receive window stalls a 1 MiB ReadResponse on 16 window updates;
      // a larger window lets downloads stream at the server's pace (bounded: at most this much is
      // buffered per connection).
      'grpc-node.flow_control_window': CLIENT_FLOW_CONTROL_WINDOW_BYTES,
      'grpc.primary_user_agent': `${opts.toolName ?? 'bzutil'}`,
      ...opts.channelOptions,
      ...(opts.interceptors ? { interceptors: opts.interceptors } : {}),
    });
    this.baseMetadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(opts.metadata ?? {})) this.baseMetadata.set(k, v);
    const requestMetadata = reapi.RequestMetadata.encode({ toolDetails: { toolName: opts.toolName ?? 'bzutil' } }).finish();
    this.baseMetadata.set('build.bazel.remote.execution.v2.requestmetadata-bin', Buffer.from(requestMetadata));
  }

  /** One request, one response. Errors reject as StatusError. */
  unary<Req, Res>(method: grpc.MethodDefinition<Req, Res>, request: Req, opts: RemoteCallOptions = {}): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (opts.signal?.aborted) return reject(StatusError.cancelled('The call was cancelled before it started'));
      const call = this.client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        this.baseMetadata.clone(),
        this.callOptions(opts),
        (err, res) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (err) reject(clientError(err));
          else resolve(res!);
        },
      );
      const onAbort = () => call.cancel();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * A server stream as an async iterable. grpc-js pauses the HTTP/2 stream while the consumer is
   * busy, so memory does not grow with the stream's length. Breaking out of the loop cancels the call.
   */
  async *serverStream<Req, Res>(method: grpc.MethodDefinition<Req, Res>, request: Req, opts: RemoteCallOptions = {}): AsyncGenerator<Res> {
    if (opts.signal?.aborted) throw StatusError.cancelled('The call was cancelled before it started');
    const call = this.client.makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      this.baseMetadata.clone(),
      this.callOptions(opts),
    );
    const onAbort = () => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    let finished = false;
    try {
      for await (const message of call) yield message as Res;
      finished = true;
    } catch (err) {
      finished = true;
      throw clientError(err);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      if (!finished) call.cancel();
    }
  }

  /** Opens a client stream. The caller writes, ends and awaits `response`. */
  clientStream<Req, Res>(method: grpc.MethodDefinition<Req, Res>, opts: RemoteCallOptions = {}): ClientStreamCall<Req, Res> {
    let settled = false;
    let resolveResponse!: (r: Res) => void;
    let rejectResponse!: (e: StatusError) => void;
    const response = new Promise<Res>((resolve, reject) => {
      resolveResponse = resolve;
      rejectResponse = reject;
    });
    // The caller may stop waiting on `response` after a write fails; never leave it unhandled.
    response.catch(() => {});
    const call = this.client.makeClientStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      this.baseMetadata.clone(),
      this.callOptions(opts),
      (err, res) => {
        settled = true;
        opts.signal?.removeEventListener('abort', onAbort);
        if (err) rejectResponse(clientError(err));
        else resolveResponse(res!);
      },
    );
    const onAbort = () => call.cancel();
    if (opts.signal?.aborted) call.cancel();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    // Write errors also arrive through the callback; swallow the stream's own 'error' event.
    call.on('error', () => {});
    return {
      write: (message) =>
        new Promise<void>((resolve, reject) => {
          if (settled) return resolve();
          const flushed = call.write(message, (err?: Error | null) => {
            if (err && !settled) reject(clientError(err));
          });
          if (flushed) return resolve();
          const done = () => {
            call.off('drain', done);
            resolve();
          };
          call.once('drain', done);
          // If the server answers while we wait for drain, stop waiting.
          response.then(done, done);
        }),
      end: () => {
        if (!settled) call.end();
      },
      response,
      get settled() {
        return settled;
      },
      cancel: () => call.cancel(),
    };
  }

  private callOptions(opts: RemoteCallOptions): grpc.CallOptions {
    const deadlineMs = opts.deadlineMs ?? this.defaultDeadlineMs;
    return deadlineMs !== undefined && Number.isFinite(deadlineMs) ? { deadline: Date.now() + deadlineMs } : {};
  }

  /** Closes the channel. Calls still running fail with CANCELLED or UNAVAILABLE. */
  close(): void {
    this.client.close();
  }
}

/** fromGrpcError, minus grpc-js's dangling "Resolution note: " when it has nothing to note. */
function clientError(err: unknown): StatusError {
  const s = fromGrpcError(err);
  const message = s.message.replace(/\.?\s*Resolution note:\s*$/, '');
  return message === s.message ? s : new StatusError(s.code, message, s.details, { cause: s.cause ?? err });
}

/**
 * The instance_name and digest_function fields of a REAPI request. SHA-256 stays implicit so that
 * servers predating the digest_function field (and Bazel-compatible caches) understand us.
 */
export function instanceRequestFields(instanceName: string, digestFunction: DigestFunction): { instanceName: string; digestFunction?: number } {
  return digestFunction === 'sha256' ? { instanceName } : { instanceName, digestFunction: digestFunctionToProto(digestFunction) };
}

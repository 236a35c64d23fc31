/**
 * The one boundary between grpc-js and bzutil's services. Services are written as plain async
 * functions that take the decoded request and a CallContext (with an AbortSignal that fires when the
 * client goes away) and return, yield or throw. These wrappers turn them into grpc-js handlers and
 * convert whatever they throw: StatusError keeps its code and google.rpc details (in
 * grpc-status-details-bin), an AbortError becomes CANCELLED, anything else becomes INTERNAL and its
 * stack is logged here, never sent to the client. A request the deserializer could not decode (an
 * UndecodableRequest, lib/proto/undecodable.ts) is answered INVALID_ARGUMENT before any handler
 * sees it. It is also where every call is observed: one
 * debug log line per RPC (method, code, duration, peer) and, with an RpcObserver, the per-RPC
 * metrics (rpc-metrics.ts). And it is where a CallGuard (auth-guard.ts) decides whether a call may run
 * at all, before its handler sees the request.
 */
import * as grpc from '@grpc/grpc-js';
import { toGrpcStatus } from '../../lib/errors/grpc-status.js';
import { Code, StatusError, toStatusError } from '../../lib/errors/status-error.js';
import { isUndecodable } from '../../lib/proto/undecodable.js';
import type { Logger } from '../../lib/util/logger.js';
import type { RpcObserver } from './rpc-metrics.js';

export interface CallContext {
  /** Fires when the client cancels or disconnects, or the deadline passes. */
  signal: AbortSignal;
  metadata: grpc.Metadata;
  peer: string;
}

export type UnaryHandler<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;
export type ServerStreamHandler<Req, Res> = (request: Req, ctx: CallContext) => AsyncIterable<Res>;
export type ClientStreamHandler<Req, Res> = (requests: AsyncIterable<Req>, ctx: CallContext) => Promise<Res>;

/**
 * Decides whether a call may run, before its handler does; throws a StatusError to refuse it
 * (UNAUTHENTICATED, PERMISSION_DENIED). `request` is the request of a unary or server-streaming call
 * and the first message of a client stream (undefined when the client sent none).
 */
export type CallGuard = (method: string, request: unknown, metadata: grpc.Metadata) => Promise<void>;

export interface HandlerFactory {
  unary<Req, Res>(name: string, handler: UnaryHandler<Req, Res>): grpc.handleUnaryCall<Req, Res>;
  serverStream<Req, Res>(name: string, handler: ServerStreamHandler<Req, Res>): grpc.handleServerStreamingCall<Req, Res>;
  clientStream<Req, Res>(name: string, handler: ClientStreamHandler<Req, Res>): grpc.handleClientStreamingCall<Req, Res>;
}

export function createHandlerFactory(logger: Logger, observe?: RpcObserver, guard?: CallGuard): HandlerFactory {
  const toStatus = (name: string, err: unknown) => {
    const s = toStatusError(err);
    if (s.code === Code.INTERNAL || s.code === Code.UNKNOWN) {
      logger.error(`${name} failed`, { error: (s.cause as Error | undefined) ?? s });
    } else {
      logger.debug(`${name} returned ${s.codeName}`, { message: s.message });
    }
    return toGrpcStatus(s);
  };
  /** Starts observing a call; the returned function ends it with a status (once). */
  const begin = (name: string, peer: string) => {
    const start = performance.now();
    const done = observe?.(name);
    let ended = false;
    return (codeName: string) => {
      if (ended) return;
      ended = true;
      done?.(codeName);
      logger.debug('RPC', { method: name, code: codeName, durationMs: Math.round((performance.now() - start) * 1000) / 1000, peer });
    };
  };
  const codeOf = (err: unknown) => toStatusError(err).codeName;

  return {
    unary: (name, handler) => (call, callback) => {
      const { ctx, settle } = contextOf(call);
      const end = begin(name, ctx.peer);
      const result = decoded(call.request, name).then(async (req) => {
        if (guard) await guard(name, req, ctx.metadata);
        return handler(req, ctx);
      });
      answer(result, settle, callback, (err) => toStatus(name, err), end, codeOf);
    },

    serverStream: (name, handler) => (call) => {
      const { ctx, settle } = contextOf(call);
      const end = begin(name, ctx.peer);
      (async () => {
        // Backpressure by written messages rather than grpc-js's 16-message buffer: with 1 MiB
        // ByteStream chunks that buffer alone (and its serialized copies) held tens of MiB per read.
        const unsent = new UnsentMessages(ctx.signal);
        const request = await decoded(call.request, name);
        if (guard) await guard(name, request, ctx.metadata);
        for await (const msg of handler(request, ctx)) {
          if (ctx.signal.aborted) return end('CANCELLED');
          call.write(msg, unsent.track());
          await unsent.below(MAX_UNSENT_MESSAGES);
        }
        if (!ctx.signal.aborted) {
          settle();
          end('OK');
          call.end();
        } else {
          end('CANCELLED');
        }
      })().catch((err) => {
        end(ctx.signal.aborted ? 'CANCELLED' : codeOf(err));
        if (ctx.signal.aborted) return;
        settle();
        call.emit('error', toStatus(name, err));
      });
    },

    clientStream: (name, handler) => (call, callback) => {
      const { ctx, settle } = contextOf(call);
      const end = begin(name, ctx.peer);
      const requests = readableToIterable<never>(call, name);
      const result = guard ? guardFirst(requests, (first) => guard(name, first, ctx.metadata)).then((checked) => handler(checked, ctx)) : handler(requests, ctx);
      answer(result, settle, callback, (err) => toStatus(name, err), end, codeOf);
    },
  };
}

/** The request, or INVALID_ARGUMENT when the deserializer could not decode it. */
async function decoded<Req>(request: Req, method: string): Promise<Req> {
  if (isUndecodable(request)) throw undecodableStatus(method, request.reason);
  return request;
}

function undecodableStatus(method: string, reason: string): StatusError {
  const description = `Not a valid protobuf message for ${method}: ${reason}`;
  return StatusError.invalidArgument(`Failed to decode the request: ${description}`, [{ field: 'request', description }]);
}

/**
 * Reads a client stream's first message and lets `check` see it; resolves to the whole stream again
 * (first message included) once the check passes, so the handler starts only after it.
 */
async function guardFirst<T>(requests: AsyncGenerator<T>, check: (first: T | undefined) => Promise<void>): Promise<AsyncIterable<T>> {
  let first: IteratorResult<T>;
  try {
    first = await requests.next();
    await check(first.done ? undefined : first.value);
  } catch (err) {
    await requests.return(undefined);
    throw err;
  }
  return (async function* () {
    if (first.done) return;
    yield first.value;
    yield* requests;
  })();
}

/** Sends the handler's result or error as the call's single answer, once the call is settled. */
function answer<Res>(
  result: Promise<Res>,
  settle: () => void,
  callback: grpc.sendUnaryData<Res>,
  toStatus: (err: unknown) => Partial<grpc.StatusObject>,
  end: (codeName: string) => void,
  codeOf: (err: unknown) => string,
): void {
  result.then(
    (res) => {
      settle();
      end('OK');
      callback(null, res);
    },
    (err) => {
      settle();
      end(codeOf(err));
      callback(toStatus(err));
    },
  );
}

type AnyServerCall = NodeJS.EventEmitter & { metadata: grpc.Metadata; getPeer(): string };

/**
 * The call's context, and `settle` to call once the handler has answered: grpc-js also reports
 * "cancelled" when a finished call's stream closes (e.g. the client half-closes after our answer),
 * and building a CANCELLED error with its stack for every call that already succeeded was a
 * measurable share of small ByteStream writes.
 */
function contextOf(call: AnyServerCall): { ctx: CallContext; settle: () => void } {
  const controller = new AbortController();
  const onCancelled = () => {
    if (!controller.signal.aborted) controller.abort(StatusError.cancelled('The client cancelled the call'));
  };
  call.on('cancelled', onCancelled);
  return {
    ctx: { signal: controller.signal, metadata: call.metadata, peer: call.getPeer() },
    settle: () => call.off('cancelled', onCancelled),
  };
}

/** Most messages of a server stream handed to grpc-js and not yet written to the HTTP/2 stream. */
const MAX_UNSENT_MESSAGES = 2;

/** Counts a server stream's messages until grpc-js reports them written (or failed). */
class UnsentMessages {
  private count = 0;
  private wake?: () => void;

  constructor(private readonly signal: AbortSignal) {}

  /** Counts one more message; returns the write callback that uncounts it. */
  track(): () => void {
    this.count++;
    return () => {
      this.count--;
      const wake = this.wake;
      this.wake = undefined;
      wake?.();
    };
  }

  /** Waits until fewer than `max` messages are unsent, or the client is gone. */
  async below(max: number): Promise<void> {
    while (this.count >= max && !this.signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.signal.removeEventListener('abort', done);
          resolve();
        };
        this.wake = done;
        this.signal.addEventListener('abort', done, { once: true });
      });
    }
  }
}

/** A grpc-js readable request stream as an async iterable; errors and cancellation end it with a throw. */
async function* readableToIterable<T>(call: grpc.ServerReadableStream<unknown, unknown>, method: string): AsyncGenerator<T> {
  let cancelled = false;
  const onCancelled = () => {
    cancelled = true;
    call.destroy(StatusError.cancelled('The client cancelled the call'));
  };
  call.on('cancelled', onCancelled);
  try {
    // Not destroyed by the loop when the handler stops early (below): Node would destroy the stream
    // with an AbortError, to which grpc-js answers by ending it (another error, "write after
    // destroy"): two errors with stack traces for every Write answered before the client's
    // half-close was read, i.e. almost every small ByteStream Write (5% of the server's time).
    for await (const msg of call.iterator({ destroyOnReturn: false })) {
      if (isUndecodable(msg)) throw undecodableStatus(method, msg.reason);
      yield msg as T;
    }
  } catch (err) {
    if (cancelled) throw StatusError.cancelled('The client cancelled the call');
    throw err;
  } finally {
    // Once the handler stops reading, a later "cancelled" (the stream closing after our answer) is no error.
    call.off('cancelled', onCancelled);
    // Stops taking the client's messages (grpc-js then stops reading them), without an error.
    if (!call.readableEnded && !call.destroyed) call.destroy();
  }
  if (cancelled) throw StatusError.cancelled('The client cancelled the call');
}

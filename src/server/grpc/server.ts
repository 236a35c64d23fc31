/**
 * Creating, binding and stopping grpc-js servers with the limits every bzutil server shares.
 */
import type { EventEmitter } from 'node:events';
import type { Http2Session } from 'node:http2';
import * as grpc from '@grpc/grpc-js';

/** Bazel's Java gRPC accepts messages up to 4 MiB; we never send more than this. */
export const MAX_SEND_MESSAGE_BYTES = 4 * 1024 * 1024;
/** We accept a little more than the batch size we advertise, for framing overhead. */
export const MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024;

/**
 * HTTP/2 receive window of server connections, per stream and per connection (the same as the
 * client's). With HTTP/2's default of 64 KiB an upload stalls: the client may send 64 KiB, then
 * waits for a window update that the server sends only once its event loop has hashed and written
 * what came before, so transfer and processing take turns instead of overlapping. A larger window
 * lets them overlap. Memory stays bounded: at most this much is buffered per connection, because
 * grpc-js stops reading a stream whose consumer applies backpressure.
 */
export const SERVER_FLOW_CONTROL_WINDOW_BYTES = 8 * 1024 * 1024;

/** Streams one client connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
export const DEFAULT_MAX_CONCURRENT_STREAMS = 512;

/**
 * What one client port lets a connection hold, from the config tree (`apiserver.*`, `scheduler.*`):
 * with the flow-control window (at most 8 MiB buffered per connection) these bound what a client
 * can make the server hold, whatever it sends.
 */
export interface PortLimits {
  /** grpc.max_concurrent_streams. @default DEFAULT_MAX_CONCURRENT_STREAMS */
  maxConcurrentStreams?: number;
  /** Largest message accepted (RESOURCE_EXHAUSTED past it). @default MAX_RECEIVE_MESSAGE_BYTES */
  maxReceiveMessageBytes?: number;
  /** ByteStream: bytes parked uploads may keep buffered in total (resumable-uploads.ts). */
  maxParkedUploadMemoryBytes?: number;
  /** ByteStream: uploads running or parked at once. */
  maxPendingUploads?: number;
}

export function createGrpcServer(options: grpc.ServerOptions = {}, limits: PortLimits = {}): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_send_message_length': MAX_SEND_MESSAGE_BYTES,
    'grpc.max_receive_message_length': limits.maxReceiveMessageBytes ?? MAX_RECEIVE_MESSAGE_BYTES,
    'grpc.max_concurrent_streams': limits.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    ...options,
  });
  setStreamReceiveWindow(server, SERVER_FLOW_CONTROL_WINDOW_BYTES);
  return server;
}

/**
 * Binds `address` ("host:port"; port 0 picks a free one) and resolves to the bound port; plaintext
 * unless `credentials` (see tls.ts) are given.
 */
export function bindGrpcServer(server: grpc.Server, address: string, credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => {
      if (err) reject(new Error(`Failed to listen on ${address}: ${err.message}`, { cause: err }));
      else {
        setConnectionReceiveWindow(server, SERVER_FLOW_CONTROL_WINDOW_BYTES);
        resolve(port);
      }
    });
  });
}

/**
 * The parts of grpc-js's Server that hold its HTTP/2 settings. grpc-js (1.14) has a client option
 * for the receive window (`grpc-node.flow_control_window`) but no server option, so the server's
 * window is set on these: the options it passes to `http2.createServer` (read at bind time) and the
 * node:http2 servers it creates. Both are feature-detected: should a grpc-js upgrade rename them, the
 * window stays at the default (slower uploads, nothing broken), and test/integration/grpc-server
 * fails to say so.
 */
interface GrpcServerInternals {
  commonServerOptions?: { settings?: Record<string, unknown> };
  http2Servers?: Map<EventEmitter, unknown>;
}

/** The per-stream window: the initial window size the server advertises in its SETTINGS. */
export function setStreamReceiveWindow(server: grpc.Server, windowBytes: number): boolean {
  const common = (server as unknown as GrpcServerInternals).commonServerOptions;
  if (typeof common !== 'object' || common === null) return false;
  common.settings = { ...common.settings, initialWindowSize: windowBytes };
  return true;
}

const widened = new WeakSet<EventEmitter>();

/** The per-connection window, set on every connection the server accepts from now on. */
export function setConnectionReceiveWindow(server: grpc.Server, windowBytes: number): boolean {
  const servers = (server as unknown as GrpcServerInternals).http2Servers;
  if (!(servers instanceof Map)) return false;
  for (const http2Server of servers.keys()) {
    if (widened.has(http2Server)) continue; // an earlier bind of the same server
    widened.add(http2Server);
    http2Server.on('session', (session: Http2Session) => {
      try {
        session.setLocalWindowSize(windowBytes);
      } catch {
        // The session closed before it was set up: nothing to widen.
      }
    });
  }
  return servers.size > 0;
}

/** Stops accepting calls, waits up to `graceMs` for running ones, then cancels what is left. */
export function shutdownGrpcServer(server: grpc.Server, graceMs = 2_000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

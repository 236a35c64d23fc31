/**
 * Creating, binding and stopping grpc-js servers with the limits every bzutil server shares.
 */
import * as grpc from '@grpc/grpc-js';

/** Bazel's Java gRPC accepts messages up to 4 MiB; we never send more than this. */
export const MAX_SEND_MESSAGE_BYTES = 4 * 1024 * 1024;
/** We accept a little more than the batch size we advertise, for framing overhead. */
export const MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024;

export function createGrpcServer(options: grpc.ServerOptions = {}): grpc.Server {
  return new grpc.Server({
    'grpc.max_send_message_length': MAX_SEND_MESSAGE_BYTES,
    'grpc.max_receive_message_length': MAX_RECEIVE_MESSAGE_BYTES,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    ...options,
  });
}

/** Binds `address` ("host:port"; port 0 picks a free one) and resolves to the bound port. */
export function bindGrpcServer(server: grpc.Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err) reject(new Error(`Failed to listen on ${address}: ${err.message}`, { cause: err }));
      else resolve(port);
    });
  });
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

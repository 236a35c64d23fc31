/**
 * The raw grpc-js baseline: the cheapest a gRPC byte stream or call can be on this machine with the
 * library bzutil uses. Messages are bare Buffers (identity serializers), nothing is hashed, parsed or
 * written to disk, and the transport settings match bzutil's (4 MiB messages, the same HTTP/2
 * receive windows on both sides), so the gap between this and a bzutil figure is what bzutil itself
 * costs, not a transport setting the baseline lacks.
 */
import type * as grpc from '@grpc/grpc-js';
import { CLIENT_FLOW_CONTROL_WINDOW_BYTES } from '../../src/lib/client/connection.js';

const identity = (b: Buffer): Buffer => b;

function method(name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path: `/bzutil.bench.Raw/${name}`,
    requestStream,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

/**
 * - `Upload` (client stream): the server counts the bytes it receives and answers their total as 8 bytes.
 * - `Download` (server stream): the request is `totalBytes` (8 bytes) and `chunkBytes` (4 bytes); the
 *   server sends one preallocated chunk repeatedly, honouring backpressure.
 * - `Noop` (unary): an empty answer to an empty request.
 */
export const rawService = {
  upload: method('Upload', true, false),
  download: method('Download', false, true),
  noop: method('Noop', false, false),
} satisfies grpc.ServiceDefinition;

/** The server options bzutil's own servers use (the receive window is set by raw-server.ts). */
export const RAW_SERVER_OPTIONS = {
  'grpc.max_send_message_length': 4 * 1024 * 1024 + 64 * 1024,
  'grpc.max_receive_message_length': 4 * 1024 * 1024 + 64 * 1024,
};

/** The channel options bzutil's own clients use. */
export const RAW_CHANNEL_OPTIONS = {
  ...RAW_SERVER_OPTIONS,
  'grpc-node.flow_control_window': CLIENT_FLOW_CONTROL_WINDOW_BYTES,
};

export function encodeDownloadRequest(totalBytes: number, chunkBytes: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeBigUInt64BE(BigInt(totalBytes), 0);
  b.writeUInt32BE(chunkBytes, 8);
  return b;
}

export function decodeDownloadRequest(b: Buffer): { totalBytes: number; chunkBytes: number } {
  if (b.length !== 12) throw new RangeError(`Download request has ${b.length} bytes, expected 12`);
  return { totalBytes: Number(b.readBigUInt64BE(0)), chunkBytes: b.readUInt32BE(8) };
}

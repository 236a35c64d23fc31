/**
 * The raw grpc-js baseline: the cheapest a gRPC byte stream or call can be on this machine with the
 * library bzutil uses. Messages are bare Buffers (identity serializers), nothing is hashed, parsed or
 * written to disk, and the channel options match bzutil's (4 MiB messages), so the gap between this
 * and a bzutil figure is what bzutil itself costs.
 */
import type * as grpc from '@grpc/grpc-js';

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

/** The channel and server options bzutil's own servers and clients use. */
export const RAW_CHANNEL_OPTIONS = {
  'grpc.max_send_message_length': 4 * 1024 * 1024 + 64 * 1024,
  'grpc.max_receive_message_length': 4 * 1024 * 1024 + 64 * 1024,
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

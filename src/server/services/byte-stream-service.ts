/**
 * google.bytestream.ByteStream over the CAS: how Bazel moves blobs too large for a batch. A thin
 * adapter: it parses and checks resource names, streams reads, and hands writes to the resumable
 * upload state machine in src/lib/bytestream/resumable-uploads.ts.
 *
 * Read streams a blob (or a range of it) in chunks of at most 1 MiB, honouring gRPC backpressure, so
 * memory never grows with blob size. `compressed-blobs/{zstd,deflate}/...` names (REAPI 2.2+) are
 * compressed on the fly on read and decompressed on the fly on write; digests and sizes are always of
 * the uncompressed bytes, which the store verifies as for any upload.
 */
import type * as grpc from '@grpc/grpc-js';
import type { BlobStore } from '../../lib/blobstore/blob-store.js';
import { compressChunks } from '../../lib/compression/codec.js';
import type { TransferCompressor } from '../../lib/compression/compressor.js';
import { badByteStreamField as badField, ResumableUploads } from '../../lib/bytestream/resumable-uploads.js';
import {
  type Compressor,
  type Digest,
  type ParsedReadResourceName,
  parseReadResourceName,
  parseWriteResourceName,
} from '../../lib/digest/digest.js';
import { StatusError, wrapStatus } from '../../lib/errors/status-error.js';
import type { bytestream } from '../../lib/proto/index.js';
import { type Clock, systemClock } from '../../lib/util/clock.js';
import type { Logger } from '../../lib/util/logger.js';
import type { CallContext, HandlerFactory } from '../grpc/handlers.js';
import type { ResolvedCapabilitiesConfig } from './capabilities-config.js';
import type { LogStreamReader } from './log-stream-reader.js';
import { assertDigestFunctionServed } from './request-fields.js';

export { DEFAULT_MAX_PENDING_UPLOADS, DEFAULT_UPLOAD_IDLE_TIMEOUT_MS } from '../../lib/bytestream/resumable-uploads.js';

/** Largest `data` in one ReadResponse: well under Bazel's 4 MiB message limit. */
export const READ_CHUNK_SIZE_BYTES = 1024 * 1024;

export interface ByteStreamServiceDeps {
  /** Must verify digests on put (a VerifyingBlobStore), so that a wrong upload never becomes visible. */
  contentAddressableStorage: BlobStore;
  capabilities: ResolvedCapabilitiesConfig;
  logger: Logger;
  /** @default systemClock */
  clock?: Clock;
  /** @default DEFAULT_UPLOAD_IDLE_TIMEOUT_MS */
  uploadIdleTimeoutMs?: number;
  /** @default DEFAULT_MAX_PENDING_UPLOADS */
  maxPendingUploads?: number;
  /** Reads of live log stream names (the scheduler's port); without it such names are refused as blob names. */
  logStreams?: LogStreamReader;
  /** @default DEFAULT_MAX_PARKED_MEMORY_BYTES */
  maxParkedMemoryBytes?: number;
}

/** The service implementation plus the handle that aborts parked uploads when the server stops. */
export interface ByteStreamService {
  implementation: grpc.UntypedServiceImplementation;
  /** Number of uploads currently running or parked (for tests and metrics). */
  readonly pendingUploadCount: number;
  /** Aborts every running and parked upload. */
  close(): void;
}

/** Creates the ByteStream service. Call `close()` when the server shuts down. */
export function createByteStreamService(handlers: HandlerFactory, deps: ByteStreamServiceDeps): ByteStreamService {
  const cas = deps.contentAddressableStorage;
  const served = deps.capabilities.digestFunctions;
  const compressors = deps.capabilities.compressors;
  const uploads = new ResumableUploads({
    contentAddressableStorage: cas,
    clock: deps.clock ?? systemClock,
    logger: deps.logger,
    ...(deps.uploadIdleTimeoutMs !== undefined ? { idleTimeoutMs: deps.uploadIdleTimeoutMs } : {}),
    ...(deps.maxPendingUploads !== undefined ? { maxPendingUploads: deps.maxPendingUploads } : {}),
    ...(deps.maxParkedMemoryBytes !== undefined ? { maxParkedMemoryBytes: deps.maxParkedMemoryBytes } : {}),
  });

  const implementation: grpc.UntypedServiceImplementation = {
    read: handlers.serverStream<bytestream.ReadRequest, bytestream.IReadResponse>('ByteStream.Read', (request, ctx) => read(request, ctx)),
    write: handlers.clientStream<bytestream.WriteRequest, bytestream.IWriteResponse>('ByteStream.Write', (requests, ctx) => write(requests, ctx)),
    queryWriteStatus: handlers.unary<bytestream.QueryWriteStatusRequest, bytestream.IQueryWriteStatusResponse>(
      'ByteStream.QueryWriteStatus',
      (request, ctx) => queryWriteStatus(request, ctx),
    ),
  };

  return {
    implementation,
    get pendingUploadCount() {
      return uploads.size;
    },
    close: () => uploads.close(),
  };

  async function* read(request: bytestream.ReadRequest, ctx: CallContext): AsyncGenerator<bytestream.IReadResponse> {
    const live = deps.logStreams?.(request.resourceName, { offset: Number(request.readOffset), limit: Number(request.readLimit), signal: ctx.signal });
    if (live) {
      for await (const data of live) yield { data };
      return;
    }
    const { digest, compressor } = checkResourceName(parseReadResourceName(request.resourceName), 'resource_name');
    const offset = request.readOffset;
    const limit = request.readLimit;
    // REAPI: for compressed-blobs/ reads read_offset is into the uncompressed bytes, and a non-zero
    // read_limit is INVALID_ARGUMENT (compressed lengths are not known in advance).
    if (compressor !== 'identity' && limit !== 0) {
      throw badField('read_limit', `Read limit ${limit} is not allowed on a compressed-blobs resource name; it must be 0`);
    }
    // google.bytestream: a read_offset that is negative or past the end is OUT_OF_RANGE.
    if (offset < 0) throw StatusError.outOfRange(`Failed to read blob ${digest.toString()}: read_offset ${offset} is negative`);
    if (limit < 0) throw badField('read_limit', `Read limit ${limit} is negative`);
    if (offset > digest.sizeBytes) {
      throw StatusError.outOfRange(`Failed to read blob ${digest.toString()}: read_offset ${offset} is past its end (${digest.sizeBytes} bytes)`);
    }
    try {
      const plain = cas.read(digest, { offset, limit: limit || undefined, signal: ctx.signal });
      // A read from offset N of a compressed name is a fresh compressed stream of bytes N.. .
      const chunks = compressor === 'identity' ? plain : compressChunks(compressor, plain);
      for await (const chunk of chunks) {
        // Stores may hand out large chunks; split them (without copying) to bound each message.
        for (let i = 0; i < chunk.length; i += READ_CHUNK_SIZE_BYTES) {
          yield { data: chunk.subarray(i, i + READ_CHUNK_SIZE_BYTES) };
        }
      }
    } catch (err) {
      throw wrapStatus(err, `Failed to read blob ${digest.toString()}`);
    }
  }

  async function write(requests: AsyncIterable<bytestream.WriteRequest>, ctx: CallContext): Promise<bytestream.IWriteResponse> {
    const it = requests[Symbol.asyncIterator]();
    try {
      const first = await it.next();
      if (first.done) throw badField('resource_name', 'Write stream ended before its first message');
      const resourceName = first.value.resourceName;
      const { digest, uploadId, compressor } = checkResourceName(parseWriteResourceName(resourceName), 'resource_name');
      return await uploads.write({ resourceName, digest, uploadId, compressor }, first.value, it, { signal: ctx.signal });
    } finally {
      // Stops reading the client's messages once we have answered (early completion or an error).
      void it.return?.(undefined)?.catch(() => {});
    }
  }

  async function queryWriteStatus(request: bytestream.QueryWriteStatusRequest, ctx: CallContext): Promise<bytestream.IQueryWriteStatusResponse> {
    let digest: Digest;
    let uploadId: string | undefined;
    let compressor: Compressor = 'identity';
    try {
      ({ digest, uploadId, compressor } = checkResourceName(parseWriteResourceName(request.resourceName), 'resource_name'));
    } catch (writeErr) {
      // Also accept a plain blob name: it can only answer whether the blob is complete.
      try {
        digest = checkResourceName(parseReadResourceName(request.resourceName), 'resource_name').digest;
      } catch {
        throw writeErr;
      }
    }
    return uploads.queryWriteStatus(request.resourceName, digest, uploadId, compressor, { signal: ctx.signal });
  }

  /** Refuses compressors and digest functions we do not serve. */
  function checkResourceName<T extends ParsedReadResourceName>(parsed: T, field: string): T & { compressor: TransferCompressor | 'identity' } {
    const compressor: Compressor = parsed.compressor;
    if (compressor !== 'identity' && !(compressors as readonly string[]).includes(compressor)) {
      const offered = compressors.length ? compressors.join(', ') : 'none';
      throw badField(field, `Compressor ${JSON.stringify(compressor)} is not supported by this server (supported_compressors: ${offered}); use one of those or a "blobs/" resource name`);
    }
    assertDigestFunctionServed(served, parsed.digest, field);
    return parsed as T & { compressor: TransferCompressor | 'identity' };
  }
}

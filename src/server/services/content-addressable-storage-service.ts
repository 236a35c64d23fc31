/**
 * REAPI ContentAddressableStorage as a thin adapter over a BlobStore: requests are validated into
 * `Digest`s at the edge, the store does the work, and results go back as protos. Batch calls report
 * per-blob outcomes in their responses (one bad blob never fails its neighbours); whole-call
 * failures are reserved for malformed or oversized requests. GetTree streams a directory hierarchy
 * breadth-first in pages that each stay under Bazel's 4 MiB message limit. SplitBlob and SpliceBlob
 * live in split-splice-handlers.ts.
 */
import type * as grpc from '@grpc/grpc-js';
import { type BlobStore } from '../../lib/blobstore/blob-store.js';
import { compressBytes, decompressBytes } from '../../lib/compression/codec.js';
import { compressorFromProto, compressorToProto, maxCompressedSizeBytes, type TransferCompressor } from '../../lib/compression/compressor.js';
import { Digest, DigestSet, requestDigestFunction, validateInstanceName } from '../../lib/digest/digest.js';
import { type DigestFunction, digestFunctionToProto } from '../../lib/digest/digest-function.js';
import { Code, StatusError, hasCode, toStatusError, wrapStatus } from '../../lib/errors/status-error.js';
import { WireDigest } from '../../lib/proto/find-missing-codec.js';
import { reapi, type rpc } from '../../lib/proto/index.js';
import { mapConcurrent } from '../../lib/util/concurrency.js';
import type { Logger } from '../../lib/util/logger.js';
import type { CallContext, HandlerFactory } from '../grpc/handlers.js';
import { MAX_SEND_MESSAGE_BYTES } from '../grpc/server.js';
import type { ResolvedCapabilitiesConfig } from './capabilities-config.js';
import { assertDigestFunctionServed, digestFromRequest } from './request-fields.js';
import { splitSpliceHandlers } from './split-splice-handlers.js';

/** Directories per GetTree response when the client leaves page_size unset. */
export const DEFAULT_GET_TREE_PAGE_SIZE = 1000;
/** Upper bound on page_size; larger requests are clamped (the spec lets servers return fewer). */
export const MAX_GET_TREE_PAGE_SIZE = 10_000;
/** Encoded directories per GetTree response stay below this, leaving room for framing and the token. */
export const MAX_GET_TREE_RESPONSE_BYTES = MAX_SEND_MESSAGE_BYTES - 512 * 1024;

/** How many blobs one batch call reads or writes at the same time. */
const BATCH_CONCURRENCY = 8;
/** Directories GetTree fetches at the same time while walking a level. */
const TREE_FETCH_CONCURRENCY = 16;
/**
 * Upper bound on the bytes a BatchReadBlobs response adds per blob besides its data: the entry's tag
 * and length, the digest (hash up to 128 hex characters, size varint) and a status with a short
 * message.
 */
const BATCH_READ_ENTRY_OVERHEAD_BYTES = 400;
/** Blobs below this travel uncompressed in BatchReadBlobs even when the client accepts compression. */
const MIN_COMPRESSED_BATCH_BLOB_BYTES = 256;

export interface ContentAddressableStorageServiceDeps {
  /** Must verify digests on put (a VerifyingBlobStore), so that a wrong upload never becomes visible. */
  contentAddressableStorage: BlobStore;
  capabilities: ResolvedCapabilitiesConfig;
  logger: Logger;
}

/** The ContentAddressableStorage service implementation for grpc-js. */
export function createContentAddressableStorageService(
  handlers: HandlerFactory,
  deps: ContentAddressableStorageServiceDeps,
): grpc.UntypedServiceImplementation {
  const cas = deps.contentAddressableStorage;
  const served = deps.capabilities.digestFunctions;
  const maxBatchTotalSizeBytes = deps.capabilities.maxBatchTotalSizeBytes;
  const compressors = deps.capabilities.compressors;
  const logger = deps.logger;

  return {
    findMissingBlobs: handlers.unary<reapi.FindMissingBlobsRequest, reapi.IFindMissingBlobsResponse>(
      'ContentAddressableStorage.FindMissingBlobs',
      async (request, ctx) => {
        const digests = findMissingArguments(served, request);
        if (digests.length === 0) return { missingBlobDigests: [] };
        // Duplicates are rare; deduplicating only the (usually few) absent digests is cheaper than
        // a set over the whole request, and answers each absent blob once whatever the store does.
        const missing = await cas.findMissing(digests, { signal: ctx.signal });
        const reported = new DigestSet();
        // Digest values go to the wire as they are (the FindMissingBlobs codec reads hash and
        // sizeBytes), with no proto object per missing digest.
        const missingBlobDigests: Digest[] = [];
        for (const d of missing) if (reported.add(d)) missingBlobDigests.push(d);
        return { missingBlobDigests };
      },
    ),

    batchUpdateBlobs: handlers.unary<reapi.BatchUpdateBlobsRequest, reapi.IBatchUpdateBlobsResponse>(
      'ContentAddressableStorage.BatchUpdateBlobs',
      async (request, ctx) => {
        validateInstanceName(request.instanceName);
        requestDigestFunction(request.digestFunction);
        const totalSizeBytes = request.requests.reduce((sum, r) => sum + (r.data?.length ?? 0), 0);
        if (totalSizeBytes > maxBatchTotalSizeBytes) {
          // REAPI: "INVALID_ARGUMENT: The client attempted to upload more than the server supported limit."
          const description = `Batch carries ${totalSizeBytes} bytes of blob data, more than the advertised max_batch_total_size_bytes of ${maxBatchTotalSizeBytes}; upload large blobs with ByteStream.Write`;
          throw StatusError.invalidArgument(`Failed to update blobs: ${description}`, [{ field: 'requests', description }]);
        }
        const responses = await mapConcurrent(request.requests, BATCH_CONCURRENCY, async (r, i) => ({
          digest: r.digest ?? {},
          status: await updateOne(request, r, i, ctx),
        }));
        return { responses };
      },
    ),

    batchReadBlobs: handlers.unary<reapi.BatchReadBlobsRequest, reapi.IBatchReadBlobsResponse>(
      'ContentAddressableStorage.BatchReadBlobs',
      async (request, ctx) => {
        const digests = request.digests.map((d, i) => digestFromRequest(served, request.instanceName, request.digestFunction, d, `digests[${i}]`));
        const totalSizeBytes = digests.reduce((sum, d) => sum + d.sizeBytes, 0);
        if (totalSizeBytes > maxBatchTotalSizeBytes) {
          // REAPI: "INVALID_ARGUMENT: The client attempted to read more than the server supported limit."
          const description = `Requested blobs total ${totalSizeBytes} bytes, more than the advertised max_batch_total_size_bytes of ${maxBatchTotalSizeBytes}; read large blobs with ByteStream.Read`;
          throw StatusError.invalidArgument(`Failed to read blobs: ${description}`, [{ field: 'digests', description }]);
        }
        const estimatedResponseBytes = totalSizeBytes + digests.length * BATCH_READ_ENTRY_OVERHEAD_BYTES;
        if (estimatedResponseBytes > MAX_SEND_MESSAGE_BYTES) {
          throw StatusError.resourceExhausted(
            `Failed to read blobs: a response for ${digests.length} blobs of ${totalSizeBytes} bytes could reach ${estimatedResponseBytes} bytes, over the ${MAX_SEND_MESSAGE_BYTES}-byte message limit; request fewer blobs per batch`,
          );
        }
        const compressor = batchReadCompressor(request.acceptableCompressors);
        const responses = await mapConcurrent(digests, BATCH_CONCURRENCY, async (digest): Promise<reapi.BatchReadBlobsResponse.IResponse> => {
          try {
            const data = await cas.get(digest, { signal: ctx.signal, maxBytes: digest.sizeBytes });
            if (compressor && data.length >= MIN_COMPRESSED_BATCH_BLOB_BYTES) {
              // Sent compressed only where that is smaller: the response never outgrows the estimate.
              const compressed = await compressBytes(compressor, data);
              if (compressed.length < data.length) {
                return { digest: digest.toProto(), data: compressed, compressor: compressorToProto(compressor), status: { code: Code.OK } };
              }
            }
            return { digest: digest.toProto(), data, status: { code: Code.OK } };
          } catch (err) {
            if (ctx.signal.aborted) throw err;
            return { digest: digest.toProto(), status: blobStatus(err, `Failed to read blob ${digest.toString()}`) };
          }
        });
        return { responses };
      },
    ),

    getTree: handlers.serverStream<reapi.GetTreeRequest, reapi.IGetTreeResponse>('ContentAddressableStorage.GetTree', (request, ctx) =>
      getTree(request, ctx),
    ),

    ...splitSpliceHandlers(handlers, cas, deps.capabilities),
  };

  /** The compressor for a BatchReadBlobs response: the first one the client accepts that we serve. */
  function batchReadCompressor(acceptable: readonly number[] | null | undefined): TransferCompressor | undefined {
    for (const value of acceptable ?? []) {
      const c = compressorFromProto(value);
      if (c && c !== 'identity' && compressors.includes(c)) return c;
    }
    return undefined;
  }

  /** Stores one blob of a batch and returns its per-blob status; never throws except on cancellation. */
  async function updateOne(
    batch: reapi.BatchUpdateBlobsRequest,
    r: reapi.BatchUpdateBlobsRequest.IRequest,
    index: number,
    ctx: CallContext,
  ): Promise<rpc.IStatus> {
    const field = `requests[${index}]`;
    let digest: Digest | undefined;
    try {
      // The batch's instance name and digest function apply to every blob in it.
      digest = Digest.fromProto(batch.instanceName, batch.digestFunction, r.digest, `${field}.digest`);
      assertDigestFunctionServed(served, digest, `${field}.digest`);
      const compressorValue = r.compressor ?? reapi.Compressor.Value.IDENTITY;
      const compressor = compressorFromProto(compressorValue);
      if (compressor === undefined || (compressor !== 'identity' && !compressors.includes(compressor))) {
        const offered = ['IDENTITY', ...compressors.map((c) => c.toUpperCase())].join(', ');
        const description = `Compressor ${reapi.Compressor.Value[compressorValue] ?? compressorValue} is not supported; this server accepts ${offered} (see supported_batch_update_compressors)`;
        throw StatusError.invalidArgument(description, [{ field: `${field}.compressor`, description }]);
      }
      let data = r.data ?? new Uint8Array(0);
      if (compressor !== 'identity') {
        // Stops at the declared size (a bomb); the verifying store then checks size and hash.
        data = await decompressBytes(compressor, data, {
          maxOutputBytes: digest.sizeBytes,
          maxInputBytes: maxCompressedSizeBytes(digest.sizeBytes),
          field: `${field}.data`,
        });
      }
      if (data.length !== digest.sizeBytes) {
        const description = `Blob ${digest.toString()} declares ${digest.sizeBytes} bytes but ${data.length} were sent`;
        throw StatusError.invalidArgument(description, [{ field: `${field}.data`, description }]);
      }
      await cas.put(digest, data, { signal: ctx.signal });
      return { code: Code.OK };
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return blobStatus(err, `Failed to store blob ${digest ? digest.toString() : `at ${field}`}`);
    }
  }

  /** The per-blob status for a failure, logged when it is the server's fault. */
  function blobStatus(err: unknown, step: string): rpc.IStatus {
    const s = toStatusError(err);
    if (s.code === Code.INTERNAL || s.code === Code.UNKNOWN) {
      logger.error(step, { error: (s.cause as Error | undefined) ?? s });
      return { code: s.code, message: `${step}: internal error` };
    }
    if (s.code === Code.NOT_FOUND) return { code: s.code, message: `${step}: not found` };
    return wrapStatus(s, step).toProto();
  }

  /** Streams the tree under root_digest breadth-first, `page_size` directories per response. */
  async function* getTree(request: reapi.GetTreeRequest, ctx: CallContext): AsyncGenerator<reapi.IGetTreeResponse> {
    const root = digestFromRequest(served, request.instanceName, request.digestFunction, request.rootDigest, 'root_digest');
    if (request.pageSize < 0) {
      const description = `Page size ${request.pageSize} is negative`;
      throw StatusError.invalidArgument(description, [{ field: 'page_size', description }]);
    }
    const pageSize = Math.min(request.pageSize || DEFAULT_GET_TREE_PAGE_SIZE, MAX_GET_TREE_PAGE_SIZE);
    const skip = request.pageToken ? parsePageToken(request.pageToken, root) : 0;

    let page: reapi.IDirectory[] = [];
    let pageBytes = 0;
    let position = 0;
    for await (const { directory, sizeBytes } of walkTree(cas, root, ctx.signal)) {
      if (position++ < skip) continue;
      if (sizeBytes > MAX_GET_TREE_RESPONSE_BYTES) {
        throw StatusError.resourceExhausted(
          `Failed to return the tree under ${root.toString()}: one directory is ${sizeBytes} bytes, over the ${MAX_GET_TREE_RESPONSE_BYTES}-byte response limit`,
        );
      }
      if (page.length > 0 && (page.length >= pageSize || pageBytes + sizeBytes > MAX_GET_TREE_RESPONSE_BYTES)) {
        yield { directories: page, nextPageToken: formatPageToken(root, position - 1) };
        page = [];
        pageBytes = 0;
      }
      page.push(directory);
      // A repeated message field costs a tag byte and a length varint besides the message itself.
      pageBytes += sizeBytes + 6;
    }
    yield { directories: page, nextPageToken: '' };
  }
}

/**
 * Validates every digest of a FindMissingBlobs request into a `Digest`, leaving out the empty blob
 * (always present: no store needs to be asked about it). The request-level parts (instance name,
 * digest function, whether it is served) are checked once, not per digest. Only a failure names the
 * position: formatting `blob_digests[i]` for each of 10k digests cost more than validating them, so
 * a digest that fails is validated again the slow way, which throws the error naming its field.
 */
function findMissingArguments(served: readonly DigestFunction[], request: reapi.FindMissingBlobsRequest): Digest[] {
  const protos = request.blobDigests;
  const instanceName = request.instanceName;
  // The full check, which names the digest's field when it throws.
  const full = (i: number): Digest => digestFromRequest(served, instanceName, request.digestFunction, protos[i], `blob_digests[${i}]`);
  let requested: DigestFunction | undefined;
  let requestedValid = true;
  try {
    requested = requestDigestFunction(request.digestFunction);
  } catch {
    // Refused by the full check, with the field of the first digest, as before.
    requestedValid = false;
  }
  const digests: Digest[] = [];
  for (let i = 0; i < protos.length; i++) {
    const p = protos[i];
    let digest: Digest | undefined;
    if (requestedValid && p && typeof p.hash === 'string' && typeof p.sizeBytes === 'number') {
      try {
        // The FindMissingBlobs decoder checked the hash's characters on the wire bytes.
        const hexChecked = p instanceof WireDigest && p.hashIsLowercaseHex;
        digest = Digest.create(instanceName, requested, p.hash, p.sizeBytes, 'blob_digests', hexChecked);
        if (!served.includes(digest.digestFunction)) digest = undefined;
      } catch {
        digest = undefined;
      }
    }
    digest ??= full(i);
    if (!digest.isEmpty) digests.push(digest);
  }
  return digests;
}

/**
 * Yields every Directory reachable from `root` once, breadth-first, in a deterministic order (the
 * order of children within each directory), so that a position in the walk is a stable page token.
 * A missing root is NOT_FOUND; missing subdirectories are left out, as the REAPI specifies.
 */
export async function* walkTree(
  cas: BlobStore,
  root: Digest,
  signal?: AbortSignal,
): AsyncGenerator<{ digest: Digest; directory: reapi.Directory; sizeBytes: number }> {
  const seen = new Set<string>([root.key]);
  let queue: Digest[] = [root];
  let isRoot = true;
  const fnValue = digestFunctionToProto(root.digestFunction);
  while (queue.length > 0) {
    const batch = queue.slice(0, TREE_FETCH_CONCURRENCY);
    queue = queue.slice(batch.length);
    const blobs = await Promise.all(
      batch.map(async (d) => {
        try {
          return await cas.get(d, { signal, maxBytes: Math.max(d.sizeBytes, 0) });
        } catch (err) {
          if (hasCode(err, Code.NOT_FOUND) && !isRoot) return undefined;
          if (hasCode(err, Code.NOT_FOUND)) throw StatusError.notFound(`Failed to get the tree: root directory ${d.toString()} is not in the CAS`);
          throw wrapStatus(err, `Failed to read directory ${d.toString()}`);
        }
      }),
    );
    isRoot = false;
    for (let i = 0; i < batch.length; i++) {
      const bytes = blobs[i];
      if (!bytes) continue;
      const digest = batch[i]!;
      let directory: reapi.Directory;
      try {
        directory = reapi.Directory.decode(bytes);
      } catch (err) {
        const description = `Blob ${digest.toString()} is not a Directory message: ${(err as Error).message}`;
        throw StatusError.invalidArgument(`Failed to get the tree: ${description}`, [{ field: 'root_digest', description }]);
      }
      directory.directories.forEach((node, j) => {
        let child: Digest;
        try {
          child = Digest.fromProto(root.instanceName, fnValue, node.digest, `directories[${j}].digest`);
        } catch (err) {
          throw wrapStatus(err, `Failed to get the tree: directory ${digest.toString()} has a malformed child ${JSON.stringify(node.name)}`);
        }
        if (!seen.has(child.key)) {
          seen.add(child.key);
          queue.push(child);
        }
      });
      yield { digest, directory, sizeBytes: bytes.length };
    }
  }
}

const PAGE_TOKEN_VERSION = 1;

/** An opaque GetTree page token: the position in the walk of the first directory of the next page. */
function formatPageToken(root: Digest, offset: number): string {
  return Buffer.from(JSON.stringify({ v: PAGE_TOKEN_VERSION, root: root.toString(), offset })).toString('base64url');
}

function parsePageToken(token: string, root: Digest): number {
  const invalid = (why: string) => {
    const description = `Page token ${JSON.stringify(token.length > 80 ? token.slice(0, 77) + '...' : token)} ${why}`;
    return StatusError.invalidArgument(description, [{ field: 'page_token', description }]);
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalid('was not issued by this server');
  }
  const p = parsed as { v?: unknown; root?: unknown; offset?: unknown } | null;
  if (!p || typeof p !== 'object' || p.v !== PAGE_TOKEN_VERSION || typeof p.root !== 'string' || !Number.isSafeInteger(p.offset) || (p.offset as number) < 0) {
    throw invalid('was not issued by this server');
  }
  if (p.root !== root.toString()) throw invalid(`belongs to the tree under ${p.root}, not ${root.toString()}`);
  return p.offset as number;
}

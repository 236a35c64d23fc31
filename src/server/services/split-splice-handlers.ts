/**
 * ContentAddressableStorage.SplitBlob and SpliceBlob (REAPI 2.4+), the two methods of the CAS
 * service that move large blobs as content-defined chunks. The request is validated into `Digest`s
 * here; lib/blobstore/chunked-blobs.ts does the work. Served only while Capabilities advertises
 * them (`chunking` in the capabilities configuration); otherwise UNIMPLEMENTED.
 */
import { ChunkedBlobs } from '../../lib/blobstore/chunked-blobs.js';
import type { BlobStore } from '../../lib/blobstore/blob-store.js';
import { StatusError } from '../../lib/errors/status-error.js';
import { reapi } from '../../lib/proto/index.js';
import type { HandlerFactory } from '../grpc/handlers.js';
import type { ResolvedCapabilitiesConfig } from './capabilities-config.js';
import { digestFromRequest } from './request-fields.js';

const FAST_CDC_2020 = reapi.ChunkingFunction.Value.FAST_CDC_2020;

/** The SplitBlob and SpliceBlob handlers over `cas`, which must verify digests on put. */
export function splitSpliceHandlers(handlers: HandlerFactory, cas: BlobStore, capabilities: ResolvedCapabilitiesConfig) {
  const served = capabilities.digestFunctions;
  const chunked = capabilities.chunking ? new ChunkedBlobs(cas, capabilities.chunking) : undefined;
  const enabled = (method: string): ChunkedBlobs => {
    if (!chunked) throw StatusError.unimplemented(`${method} is not enabled on this server (${method === 'SplitBlob' ? 'split' : 'splice'}_blob_support is false in its capabilities)`);
    return chunked;
  };

  return {
    splitBlob: handlers.unary<reapi.SplitBlobRequest, reapi.ISplitBlobResponse>('ContentAddressableStorage.SplitBlob', async (request, ctx) => {
      const chunks = enabled('SplitBlob');
      const blob = digestFromRequest(served, request.instanceName, request.digestFunction, request.blobDigest, 'blob_digest');
      // UNKNOWN (unset) lets the server choose; we chunk with FastCDC 2020 only.
      const fn = request.chunkingFunction ?? 0;
      if (fn !== 0 && fn !== FAST_CDC_2020) {
        const description = `Chunking function ${reapi.ChunkingFunction.Value[fn] ?? fn} is not supported; this server splits with FAST_CDC_2020 (see fast_cdc_2020_params)`;
        throw StatusError.invalidArgument(description, [{ field: 'chunking_function', description }]);
      }
      const digests = await chunks.split(blob, { signal: ctx.signal });
      return { chunkDigests: digests.map((d) => d.toProto()), chunkingFunction: FAST_CDC_2020 };
    }),

    spliceBlob: handlers.unary<reapi.SpliceBlobRequest, reapi.ISpliceBlobResponse>('ContentAddressableStorage.SpliceBlob', async (request, ctx) => {
      const chunks = enabled('SpliceBlob');
      const blob = digestFromRequest(served, request.instanceName, request.digestFunction, request.blobDigest, 'blob_digest');
      // Any chunking is accepted: the blob is checked by its digest, not by how it was cut.
      const parts = request.chunkDigests.map((d, i) => digestFromRequest(served, request.instanceName, request.digestFunction, d, `chunk_digests[${i}]`));
      const mixed = parts.findIndex((d) => d.digestFunction !== blob.digestFunction);
      if (mixed >= 0) {
        const description = `Chunk ${parts[mixed]} is a ${parts[mixed]!.digestFunction} digest but the blob is ${blob.digestFunction}`;
        throw StatusError.invalidArgument(description, [{ field: `chunk_digests[${mixed}]`, description }]);
      }
      await chunks.splice(blob, parts, { signal: ctx.signal });
      return { blobDigest: blob.toProto() };
    }),
  };
}

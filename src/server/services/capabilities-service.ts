/**
 * REAPI Capabilities: tells clients (Bazel first of all) which digest functions, batch sizes, API
 * versions and, on the scheduler, execution features this server offers. Bazel calls it once per
 * build before anything else and shapes every later request by the answer, so each value here must
 * be one the other services actually honour. The apiserver serves it without execution; the
 * scheduler reuses it with `execution` set.
 */
import type * as grpc from '@grpc/grpc-js';
import { compressorToProto } from '../../lib/compression/compressor.js';
import { validateInstanceName } from '../../lib/digest/digest.js';
import { digestFunctionToProto } from '../../lib/digest/digest-function.js';
import { reapi } from '../../lib/proto/index.js';
import { DEPRECATED_API_VERSION, HIGH_API_VERSION, LOW_API_VERSION, type CapabilitiesConfig, type ResolvedCapabilitiesConfig, resolveCapabilitiesConfig } from './capabilities-config.js';
import type { HandlerFactory } from '../grpc/handlers.js';

/** The ServerCapabilities message for a configuration. */
export function buildServerCapabilities(config: ResolvedCapabilitiesConfig): reapi.IServerCapabilities {
  const digestFunctions = config.digestFunctions.map(digestFunctionToProto);
  const caps: reapi.IServerCapabilities = {
    cacheCapabilities: {
      digestFunctions,
      actionCacheUpdateCapabilities: { updateEnabled: config.actionCacheUpdateEnabled },
      maxBatchTotalSizeBytes: config.maxBatchTotalSizeBytes,
      symlinkAbsolutePathStrategy:
        config.symlinkAbsolutePathStrategy === 'ALLOWED'
          ? reapi.SymlinkAbsolutePathStrategy.Value.ALLOWED
          : reapi.SymlinkAbsolutePathStrategy.Value.DISALLOWED,
      // Identity is implied; these are served for ByteStream compressed-blobs/ and batch calls alike.
      supportedCompressors: config.compressors.map(compressorToProto),
      supportedBatchUpdateCompressors: config.compressors.map(compressorToProto),
      ...(config.chunking
        ? {
            splitBlobSupport: true,
            spliceBlobSupport: true,
            // protobufjs's camel-case of fast_cdc_2020_params.
            fastCdc_2020Params: { avgChunkSizeBytes: config.chunking.avgChunkSizeBytes, seed: config.chunking.seed },
          }
        : {}),
    },
    lowApiVersion: LOW_API_VERSION,
    highApiVersion: HIGH_API_VERSION,
    deprecatedApiVersion: DEPRECATED_API_VERSION,
  };
  if (config.execution) {
    caps.executionCapabilities = {
      // The deprecated single field is what Bazel 4 reads; it must be the function Bazel will use:
      // SHA-256 whenever it is served (Bazel 4 knows no BLAKE3).
      digestFunction: config.digestFunctions.includes('sha256') ? digestFunctionToProto('sha256') : digestFunctions[0],
      digestFunctions,
      execEnabled: true,
      executionPriorityCapabilities: { priorities: config.execution.priorityRanges.map((r) => ({ ...r })) },
      supportedNodeProperties: [...config.execution.supportedNodeProperties],
    };
  }
  return caps;
}

/**
 * Kept for byte-stream-service.ts, which another branch is rewriting: import these from
 * ./request-fields.js instead. TODO(lead): drop this re-export once byte-stream-service imports
 * request-fields directly.
 */

/** The Capabilities service implementation for grpc-js. */
export function createCapabilitiesService(handlers: HandlerFactory, config: CapabilitiesConfig = {}): grpc.UntypedServiceImplementation {
  // Resolving is idempotent, so an already resolved configuration may be passed too.
  const capabilities = buildServerCapabilities(resolveCapabilitiesConfig(config));
  return {
    getCapabilities: handlers.unary<reapi.GetCapabilitiesRequest, reapi.IServerCapabilities>('Capabilities.GetCapabilities', async (request) => {
      // Validates the instance name, so a malformed one fails here rather than at the first upload.
      validateInstanceName(request.instanceName);
      return capabilities;
    }),
  };
}

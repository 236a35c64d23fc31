/**
 * REAPI Capabilities: tells clients (Bazel first of all) which digest functions, batch sizes, API
 * versions and, on the scheduler, execution features this server offers. Bazel calls it once per
 * build before anything else and shapes every later request by the answer, so each value here must
 * be one the other services actually honour. The apiserver serves it without execution; the
 * scheduler reuses it with `execution` set.
 */
import type * as grpc from '@grpc/grpc-js';
import { Digest, validateInstanceName } from '../../lib/digest/digest.js';
import { type DigestFunction, digestFunctionToProto } from '../../lib/digest/digest-function.js';
import { StatusError } from '../../lib/errors/status-error.js';
import { reapi, type semver } from '../../lib/proto/index.js';
import { MAX_BATCH_TOTAL_SIZE_BYTES } from '../../lib/proto/message-limits.js';
import { MAX_SEND_MESSAGE_BYTES } from '../grpc/server.js';
import type { HandlerFactory } from '../grpc/handlers.js';

/** What the CAS advertises as max_batch_total_size_bytes unless configured (see lib/proto/message-limits.ts). */
export const DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES = MAX_BATCH_TOTAL_SIZE_BYTES;

/** The REAPI versions whose features we serve: 2.3 adds digest_function fields and BatchReadBlobs compressors. */
export const LOW_API_VERSION: semver.ISemVer = { major: 2, minor: 0, patch: 0 };
export const HIGH_API_VERSION: semver.ISemVer = { major: 2, minor: 3, patch: 0 };
export const DEPRECATED_API_VERSION: semver.ISemVer = { major: 2, minor: 0, patch: 0 };

export interface PriorityRange {
  minPriority: number;
  maxPriority: number;
}

/** What a server offers; shared by the apiserver (cache only) and the scheduler (cache and execution). */
export interface CapabilitiesConfig {
  /**
   * Digest functions accepted in requests. Requests naming (or implying by hash length) another
   * function are refused with INVALID_ARGUMENT.
   * @default ['sha256']
   */
  digestFunctions?: readonly DigestFunction[];
  /**
   * Largest sum of blob sizes accepted by BatchUpdateBlobs and returned by BatchReadBlobs.
   * @default DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES
   */
  maxBatchTotalSizeBytes?: number;
  /**
   * Whether action outputs may be symlinks to absolute paths. Bazel refuses to upload such outputs
   * when this is 'DISALLOWED'.
   * @default 'ALLOWED'
   */
  symlinkAbsolutePathStrategy?: 'ALLOWED' | 'DISALLOWED';
  /**
   * Whether clients may write the action cache (UpdateActionResult); when false it answers
   * PERMISSION_DENIED and only workers fill the cache.
   * @default true
   */
  actionCacheUpdateEnabled?: boolean;
  /** Set by the scheduler: advertises remote execution. Absent on a cache-only apiserver. */
  execution?: {
    /** Priority ranges the scheduler honours (lower values run first). @default [{ minPriority: 0, maxPriority: 0 }] */
    priorityRanges?: readonly PriorityRange[];
    /** Platform property names the scheduler understands, if it restricts them. */
    supportedNodeProperties?: readonly string[];
  };
}

/** A CapabilitiesConfig with every default applied. */
export interface ResolvedCapabilitiesConfig {
  digestFunctions: readonly DigestFunction[];
  maxBatchTotalSizeBytes: number;
  symlinkAbsolutePathStrategy: 'ALLOWED' | 'DISALLOWED';
  actionCacheUpdateEnabled: boolean;
  execution?: { priorityRanges: readonly PriorityRange[]; supportedNodeProperties: readonly string[] };
}

/** Applies defaults and rejects values that would make us advertise something we cannot serve. */
export function resolveCapabilitiesConfig(config: CapabilitiesConfig = {}): ResolvedCapabilitiesConfig {
  const digestFunctions = config.digestFunctions?.length ? [...new Set(config.digestFunctions)] : ['sha256' as const];
  const maxBatchTotalSizeBytes = config.maxBatchTotalSizeBytes ?? DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES;
  if (!Number.isSafeInteger(maxBatchTotalSizeBytes) || maxBatchTotalSizeBytes <= 0 || maxBatchTotalSizeBytes > MAX_SEND_MESSAGE_BYTES) {
    throw new TypeError(
      `Failed to configure capabilities: maxBatchTotalSizeBytes ${JSON.stringify(config.maxBatchTotalSizeBytes)} must be a positive integer of at most ${MAX_SEND_MESSAGE_BYTES}`,
    );
  }
  return {
    digestFunctions,
    maxBatchTotalSizeBytes,
    symlinkAbsolutePathStrategy: config.symlinkAbsolutePathStrategy ?? 'ALLOWED',
    actionCacheUpdateEnabled: config.actionCacheUpdateEnabled ?? true,
    execution: config.execution
      ? {
          priorityRanges: config.execution.priorityRanges?.length ? config.execution.priorityRanges : [{ minPriority: 0, maxPriority: 0 }],
          supportedNodeProperties: config.execution.supportedNodeProperties ?? [],
        }
      : undefined,
  };
}

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
      // Only identity is served: no compressed-blobs resource names, no compressed batches.
      supportedCompressors: [],
      supportedBatchUpdateCompressors: [],
    },
    lowApiVersion: LOW_API_VERSION,
    highApiVersion: HIGH_API_VERSION,
    deprecatedApiVersion: DEPRECATED_API_VERSION,
  };
  if (config.execution) {
    caps.executionCapabilities = {
      // The deprecated single field is what Bazel 4 reads; it must be the function Bazel will use.
      digestFunction: digestFunctions[0],
      digestFunctions,
      execEnabled: true,
      executionPriorityCapabilities: { priorities: config.execution.priorityRanges.map((r) => ({ ...r })) },
      supportedNodeProperties: [...config.execution.supportedNodeProperties],
    };
  }
  return caps;
}

/**
 * Converts a request digest into a `Digest`, and refuses digest functions this server does not serve
 * (INVALID_ARGUMENT with a BadRequest violation on `field`). Every service funnels its digests
 * through here so that what Capabilities advertises is exactly what the services accept.
 */
export function digestFromRequest(
  served: readonly DigestFunction[],
  instanceName: string,
  digestFunctionValue: number | null | undefined,
  digest: reapi.IDigest | null | undefined,
  field: string,
): Digest {
  const d = Digest.fromProto(instanceName, digestFunctionValue, digest, field);
  assertDigestFunctionServed(served, d, field);
  return d;
}

/** INVALID_ARGUMENT unless `digest` uses one of the `served` functions. */
export function assertDigestFunctionServed(served: readonly DigestFunction[], digest: Digest, field: string): void {
  if (!served.includes(digest.digestFunction)) {
    const description = `Digest function ${digest.digestFunction} of ${digest.toString()} is not served here (served: ${served.join(', ')})`;
    throw StatusError.invalidArgument(description, [{ field, description }]);
  }
}

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

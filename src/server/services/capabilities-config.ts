/**
 * What a server offers in Capabilities, and so what its services accept: shared by the apiserver
 * (cache only) and the scheduler (cache and execution), and read by every service. Its own module
 * so that services depend on the configuration, not on the Capabilities service.
 */
import { DEFAULT_AVG_CHUNK_SIZE_BYTES, validateFastCdcParams } from '../../lib/cas/fastcdc.js';
import { TRANSFER_COMPRESSORS, type TransferCompressor } from '../../lib/compression/compressor.js';
import { DIGEST_FUNCTIONS, type DigestFunction } from '../../lib/digest/digest-function.js';
import type { semver } from '../../lib/proto/index.js';
import { MAX_BATCH_TOTAL_SIZE_BYTES } from '../../lib/proto/message-limits.js';
import { MAX_SEND_MESSAGE_BYTES } from '../grpc/server.js';

/**
 * The largest batch (sum of blob sizes) we advertise by default: Bazel's 4 MiB message limit minus
 * 256 KiB of headroom for the per-blob framing (digest, status, field tags) of a full batch response.
 */
export const DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES = MAX_BATCH_TOTAL_SIZE_BYTES;

/**
 * The REAPI versions whose features we serve: 2.3 adds digest_function fields and BatchReadBlobs
 * compressors, 2.4 SplitBlob and SpliceBlob.
 */
export const LOW_API_VERSION: semver.ISemVer = { major: 2, minor: 0, patch: 0 };
export const HIGH_API_VERSION: semver.ISemVer = { major: 2, minor: 4, patch: 0 };
export const DEPRECATED_API_VERSION: semver.ISemVer = { major: 2, minor: 0, patch: 0 };

export interface PriorityRange {
  minPriority: number;
  maxPriority: number;
}

/** What a server offers; shared by the apiserver (cache only) and the scheduler (cache and execution). */
export interface CapabilitiesConfig {
  /**
   * Digest functions accepted in requests. Requests naming (or implying by hash length) another
   * function are refused with INVALID_ARGUMENT. Blobs and action results of different functions
   * never mix: storage files them under per-function keys.
   * @default every implemented function, SHA-256 first (DIGEST_FUNCTIONS)
   */
  digestFunctions?: readonly DigestFunction[];
  /**
   * Compressors accepted and served for blob transfer: ByteStream `compressed-blobs/` resource names
   * and the `compressor` fields of BatchUpdateBlobs/BatchReadBlobs (identity is always served). An
   * empty list turns compressed transfers off.
   * @default ['zstd', 'deflate']
   */
  compressors?: readonly TransferCompressor[];
  /**
   * Largest sum of blob sizes accepted by BatchUpdateBlobs and returned by BatchReadBlobs.
   * @default DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES
   */
  maxBatchTotalSizeBytes?: number;
  /**
   * SplitBlob/SpliceBlob with FastCDC 2020 chunking (advertised as split_blob_support,
   * splice_blob_support and fast_cdc_2020_params); `false` turns both off (UNIMPLEMENTED).
   * @default { avgChunkSizeBytes: 512 KiB, seed: 0 }
   */
  chunking?: false | { avgChunkSizeBytes?: number; seed?: number };
  /**
   * Whether action outputs may be symlinks to absolute paths. Bazel refuses to upload such outputs
   * when this is 'DISALLOWED'.
   * @default 'ALLOWED'
   */
  symlinkAbsolutePathStrategy?: 'ALLOWED' | 'DISALLOWED';
  /**
   * Whether clients may write the action cache (UpdateActionResult); when false it answers
   * PERMISSION_DENIED and only the scheduler fills the cache, with results of remote executions
   * (a client able to write it could plant any result for any action). Cache-only setups, where
   * Bazel uploads its local results, turn it on (`--allow_ac_updates`).
   * @default false
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
  compressors: readonly TransferCompressor[];
  maxBatchTotalSizeBytes: number;
  /** False when SplitBlob/SpliceBlob are off (false, not absent, so that resolving again keeps it off). */
  chunking: false | { avgChunkSizeBytes: number; seed: number };
  symlinkAbsolutePathStrategy: 'ALLOWED' | 'DISALLOWED';
  actionCacheUpdateEnabled: boolean;
  execution?: { priorityRanges: readonly PriorityRange[]; supportedNodeProperties: readonly string[] };
}

/** Applies defaults and rejects values that would make us advertise something we cannot serve. */
export function resolveCapabilitiesConfig(config: CapabilitiesConfig = {}): ResolvedCapabilitiesConfig {
  const digestFunctions = config.digestFunctions?.length ? [...new Set(config.digestFunctions)] : [...DIGEST_FUNCTIONS];
  const maxBatchTotalSizeBytes = config.maxBatchTotalSizeBytes ?? DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES;
  if (!Number.isSafeInteger(maxBatchTotalSizeBytes) || maxBatchTotalSizeBytes <= 0 || maxBatchTotalSizeBytes > MAX_SEND_MESSAGE_BYTES) {
    throw new TypeError(
      `Failed to configure capabilities: maxBatchTotalSizeBytes ${JSON.stringify(config.maxBatchTotalSizeBytes)} must be a positive integer of at most ${MAX_SEND_MESSAGE_BYTES}`,
    );
  }
  const compressors = config.compressors ? [...new Set(config.compressors)] : [...TRANSFER_COMPRESSORS];
  const chunking =
    config.chunking === false ? false : { avgChunkSizeBytes: config.chunking?.avgChunkSizeBytes ?? DEFAULT_AVG_CHUNK_SIZE_BYTES, seed: config.chunking?.seed ?? 0 };
  if (chunking) {
    try {
      validateFastCdcParams(chunking);
    } catch (err) {
      throw new TypeError(`Failed to configure capabilities: ${(err as Error).message}`);
    }
  }
  return {
    digestFunctions,
    compressors,
    maxBatchTotalSizeBytes,
    chunking,
    symlinkAbsolutePathStrategy: config.symlinkAbsolutePathStrategy ?? 'ALLOWED',
    actionCacheUpdateEnabled: config.actionCacheUpdateEnabled ?? false,
    execution: config.execution
      ? {
          priorityRanges: config.execution.priorityRanges?.length ? config.execution.priorityRanges : [{ minPriority: 0, maxPriority: 0 }],
          supportedNodeProperties: config.execution.supportedNodeProperties ?? [],
        }
      : undefined,
  };
}


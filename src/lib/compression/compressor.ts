/**
 * The compressors bzutil serves for blob transfer (REAPI 2.2+ `compressed-blobs/` resource names and
 * the `compressor` fields of batch calls): zstd and raw DEFLATE (RFC 1951, no zlib header). Identity
 * is implied everywhere. The digest and size of a compressed transfer are always those of the
 * uncompressed bytes; compression is only how they travel.
 */
import { reapi } from '../proto/index.js';

/** A compressor we can encode and decode. */
export type TransferCompressor = 'zstd' | 'deflate';

export const TRANSFER_COMPRESSORS: readonly TransferCompressor[] = ['zstd', 'deflate'];

const TO_PROTO: Record<TransferCompressor, reapi.Compressor.Value> = {
  zstd: reapi.Compressor.Value.ZSTD,
  deflate: reapi.Compressor.Value.DEFLATE,
};

export function compressorToProto(compressor: TransferCompressor | 'identity'): reapi.Compressor.Value {
  return compressor === 'identity' ? reapi.Compressor.Value.IDENTITY : TO_PROTO[compressor];
}

/** The compressor of a proto enum value: 'identity' for IDENTITY (0), undefined for ones we do not serve. */
export function compressorFromProto(value: number | null | undefined): TransferCompressor | 'identity' | undefined {
  if (!value) return 'identity';
  for (const c of TRANSFER_COMPRESSORS) if (TO_PROTO[c] === value) return c;
  return undefined;
}

export function isTransferCompressor(name: string): name is TransferCompressor {
  return (TRANSFER_COMPRESSORS as readonly string[]).includes(name);
}

/**
 * The most compressed bytes we accept for a blob of `sizeBytes`: a generous bound above what zstd and
 * deflate emit for incompressible input (a few bytes per block plus frame headers). It stops a sender
 * who streams endless input that decompresses to nothing (skippable frames, empty stored blocks).
 */
export function maxCompressedSizeBytes(sizeBytes: number): number {
  return sizeBytes + Math.ceil(sizeBytes / 64) + 64 * 1024;
}

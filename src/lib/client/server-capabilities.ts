/**
 * What a CAS client learns from the server's GetCapabilities, asked once per client: the batch
 * size limit and the compressors both sides share. A failed ask is not remembered, so a later call
 * tries again; a server without the Capabilities service gets the defaults.
 */
import { type FastCdcParams, validateFastCdcParams } from '../cas/fastcdc.js';
import { compressorToProto, type TransferCompressor } from '../compression/compressor.js';
import { Code, hasCode, wrapStatus } from '../errors/status-error.js';
import type { reapi } from '../proto/index.js';
import { MAX_BATCH_TOTAL_SIZE_BYTES } from '../proto/message-limits.js';
import { capabilitiesService } from '../proto/services.js';
import type { RemoteCallOptions, RemoteConnection } from './connection.js';
import { type ResolvedRetryOptions, withRetry } from './retry.js';

/** Batch limit used when the server advertises none (and the cap on what it advertises). */
export const DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES = MAX_BATCH_TOTAL_SIZE_BYTES;

/** The compressor for ByteStream and for BatchUpdateBlobs; undefined = identity. */
export interface TransferCompressors {
  byteStream?: TransferCompressor;
  batchUpdate?: TransferCompressor;
}

export class ServerCapabilities {
  private asked?: Promise<reapi.IServerCapabilities>;
  private compressors?: Promise<TransferCompressors>;

  constructor(
    private readonly connection: RemoteConnection,
    private readonly retry: ResolvedRetryOptions,
    private readonly instanceName: string,
    private readonly opts: { maxBatchTotalSizeBytes?: number; compressor?: TransferCompressor },
  ) {}

  capabilities(opts: RemoteCallOptions): Promise<reapi.IServerCapabilities> {
    let capabilities = this.asked;
    if (!capabilities) {
      capabilities = withRetry(
        this.retry,
        () => this.connection.unary(capabilitiesService.getCapabilities, { instanceName: this.instanceName }, opts),
        opts.signal,
      );
      // A failed attempt must not poison later calls.
      capabilities.catch(() => (this.asked = undefined));
      this.asked = capabilities;
    }
    return capabilities;
  }

  /** The largest total a batch request may carry: the server's advertised limit, capped by 4 MiB. */
  async maxBatchTotalSizeBytes(opts: RemoteCallOptions): Promise<number> {
    if (this.opts.maxBatchTotalSizeBytes) return Math.min(this.opts.maxBatchTotalSizeBytes, DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES);
    let advertised = 0;
    try {
      advertised = (await this.capabilities(opts)).cacheCapabilities?.maxBatchTotalSizeBytes ?? 0;
    } catch (err) {
      // Servers without the Capabilities service still serve the CAS; fall back to the default.
      if (!hasCode(err, Code.UNIMPLEMENTED)) throw wrapStatus(err, `Failed to get the capabilities of ${this.connection.address}`);
    }
    return advertised > 0 ? Math.min(advertised, DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES) : DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES;
  }

  /** The configured compressor where the server advertises it, else none (identity). */
  transferCompressors(opts: RemoteCallOptions): Promise<TransferCompressors> {
    const wanted = this.opts.compressor;
    if (!wanted) return Promise.resolve({});
    this.compressors ??= this.capabilities(opts).then(
      (caps) => {
        const value = compressorToProto(wanted);
        return {
          byteStream: caps.cacheCapabilities?.supportedCompressors?.includes(value) ? wanted : undefined,
          batchUpdate: caps.cacheCapabilities?.supportedBatchUpdateCompressors?.includes(value) ? wanted : undefined,
        };
      },
      (err: unknown) => {
        this.compressors = undefined;
        if (hasCode(err, Code.UNIMPLEMENTED)) return {};
        throw wrapStatus(err, `Failed to get the capabilities of ${this.connection.address}`);
      },
    );
    return this.compressors;
  }

  /**
   * The server's FastCDC 2020 parameters and whether it splits and splices blobs; undefined when it
   * does neither, or advertises parameters we cannot chunk with.
   */
  async chunking(opts: RemoteCallOptions): Promise<{ params: FastCdcParams; split: boolean; splice: boolean } | undefined> {
    let cache: reapi.ICacheCapabilities | null | undefined;
    try {
      cache = (await this.capabilities(opts)).cacheCapabilities;
    } catch (err) {
      if (hasCode(err, Code.UNIMPLEMENTED)) return undefined;
      throw wrapStatus(err, `Failed to get the capabilities of ${this.connection.address}`);
    }
    const p = cache?.fastCdc_2020Params;
    if (!p || !(cache?.splitBlobSupport || cache?.spliceBlobSupport)) return undefined;
    const params = { avgChunkSizeBytes: Number(p.avgChunkSizeBytes ?? 0), seed: p.seed ?? 0 };
    try {
      validateFastCdcParams(params);
    } catch {
      return undefined;
    }
    return { params, split: cache.splitBlobSupport === true, splice: cache.spliceBlobSupport === true };
  }
}

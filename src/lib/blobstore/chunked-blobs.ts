/**
 * SplitBlob and SpliceBlob (REAPI 2.4+) over a BlobStore: a large blob as a list of content-defined
 * chunks (lib/cas/fastcdc.ts), each an ordinary CAS blob. A client that changed a few bytes of a
 * large blob uploads the chunks the server lacks and asks it to splice them; a client that holds
 * most chunks of a blob already fetches the others only.
 *
 * - `split` reads the stored blob once, cuts it, stores the chunks the CAS lacks and answers their
 *   digests. The answer is remembered (bounded, in memory) and reused while every chunk is still
 *   present, so asking twice costs one FindMissing.
 * - `splice` checks that the chunks' sizes add up and that every chunk is present
 *   (FAILED_PRECONDITION with a PreconditionFailure MISSING violation per absent chunk), then puts
 *   the blob as the stream of its chunks. The store below must verify digests (VerifyingBlobStore):
 *   chunks that concatenate to other bytes are refused with INVALID_ARGUMENT and nothing is stored.
 * Memory stays bounded: one chunk window at a time, never the whole blob.
 */
import { chunkStream, type FastCdcParams, validateFastCdcParams } from '../cas/fastcdc.js';
import { Digest, DigestSet } from '../digest/digest.js';
import { Code, StatusError, hasCode, wrapStatus } from '../errors/status-error.js';
import { MAX_SPLICE_EXPECTED_CHUNKS } from '../proto/message-limits.js';
import { mapConcurrent } from '../util/concurrency.js';
import type { BlobStore, CallOptions } from './blob-store.js';

/** Chunk bytes held while split stores a window of chunks. */
const SPLIT_WINDOW_BYTES = 8 * 1024 * 1024;
/** Chunk puts in flight during split. */
const SPLIT_PUT_CONCURRENCY = 4;
/** Blobs whose chunk lists are remembered. */
const DEFAULT_REMEMBERED_SPLITS = 4096;

export interface ChunkedBlobsOptions extends FastCdcParams {
  /** How many blobs' chunk lists to remember (least recently used dropped first). @default 4096 */
  rememberedSplits?: number;
}

export class ChunkedBlobs {
  private readonly params: FastCdcParams;
  private readonly remembered = new Map<string, Digest[]>();
  private readonly rememberedLimit: number;

  /** `cas` must verify what it stores (see the file comment). */
  constructor(
    private readonly cas: BlobStore,
    opts: ChunkedBlobsOptions,
  ) {
    validateFastCdcParams(opts);
    this.params = { avgChunkSizeBytes: opts.avgChunkSizeBytes, seed: opts.seed ?? 0 };
    this.rememberedLimit = opts.rememberedSplits ?? DEFAULT_REMEMBERED_SPLITS;
  }

  /** The digests of the chunks that make up `blob`, every one present in the CAS. NOT_FOUND if the blob is absent. */
  async split(blob: Digest, opts: CallOptions = {}): Promise<Digest[]> {
    if (blob.isEmpty) return [];
    if (blob.sizeBytes / this.params.avgChunkSizeBytes > MAX_SPLICE_EXPECTED_CHUNKS) {
      throw StatusError.resourceExhausted(
        `Failed to split blob ${blob}: at ${this.params.avgChunkSizeBytes}-byte chunks its chunk list would not fit in a message (more than ${MAX_SPLICE_EXPECTED_CHUNKS} chunks); read it with ByteStream`,
      );
    }
    const known = this.remembered.get(blob.key);
    if (known && (await this.cas.findMissing(known, opts)).length === 0) {
      this.remember(blob, known);
      return known;
    }
    const chunks: Digest[] = [];
    let window: { digest: Digest; data: Uint8Array }[] = [];
    let windowBytes = 0;
    const flush = async () => {
      const missing = new Set((await this.cas.findMissing(window.map((c) => c.digest), opts)).map((d) => d.key));
      // A chunk that occurs twice in the window is put once.
      const toPut = window.filter((c) => missing.delete(c.digest.key));
      await mapConcurrent(toPut, SPLIT_PUT_CONCURRENCY, (c) => this.cas.put(c.digest, c.data, opts));
      window = [];
      windowBytes = 0;
    };
    let total = 0;
    try {
      for await (const data of chunkStream(this.cas.read(blob, opts), this.params)) {
        const digest = Digest.ofBytes(data, { instanceName: blob.instanceName, digestFunction: blob.digestFunction });
        chunks.push(digest);
        total += data.length;
        // A copy: the chunker's views share buffers with the chunks before and after them.
        window.push({ digest, data: Uint8Array.prototype.slice.call(data) });
        windowBytes += data.length;
        if (windowBytes >= SPLIT_WINDOW_BYTES) await flush();
      }
      await flush();
    } catch (err) {
      if (hasCode(err, Code.NOT_FOUND) && chunks.length === 0) throw StatusError.notFound(`Failed to split blob ${blob}: it is not in the CAS`);
      throw wrapStatus(err, `Failed to split blob ${blob}`);
    }
    if (total !== blob.sizeBytes) throw StatusError.internal(`Failed to split blob ${blob}: the store returned ${total} bytes`);
    this.remember(blob, chunks);
    return chunks;
  }

  /**
   * Stores `blob` as the concatenation of `chunks` (all of `blob`'s instance and digest function).
   * INVALID_ARGUMENT when the sizes do not add up or the bytes do not hash to `blob`;
   * FAILED_PRECONDITION (PreconditionFailure MISSING) when chunks are absent.
   */
  async splice(blob: Digest, chunks: readonly Digest[], opts: CallOptions = {}): Promise<void> {
    const total = chunks.reduce((sum, c) => sum + c.sizeBytes, 0);
    if (total !== blob.sizeBytes) {
      const description = `Chunks add up to ${total} bytes but blob ${blob} has ${blob.sizeBytes}`;
      throw StatusError.invalidArgument(`Failed to splice blob ${blob}: ${description}`, [{ field: 'chunk_digests', description }]);
    }
    const missing = await this.cas.findMissing(uniqueDigests(chunks), opts);
    if (missing.length > 0) throw StatusError.missingBlobs(missing, `Failed to splice blob ${blob}: ${missing.length} of its chunks are not in the CAS`);
    if (blob.isEmpty) return;
    const cas = this.cas;
    let evicted: StatusError | undefined;
    async function* concatenated(): AsyncGenerator<Uint8Array> {
      for (const c of chunks) {
        if (c.isEmpty) continue;
        try {
          yield* cas.read(c, opts);
        } catch (err) {
          // Evicted since the FindMissing above: the client uploads it again and retries.
          if (hasCode(err, Code.NOT_FOUND)) evicted = StatusError.missingBlobs([c], `Failed to splice blob ${blob}: chunk ${c} is not in the CAS`);
          throw evicted ?? err;
        }
      }
    }
    try {
      await this.cas.put(blob, concatenated(), opts);
    } catch (err) {
      // The stores below may wrap what the stream threw; a missing chunk is what explains it.
      throw evicted ?? wrapStatus(err, `Failed to splice blob ${blob}`);
    }
    this.remember(blob, [...chunks]);
  }

  private remember(blob: Digest, chunks: Digest[]): void {
    this.remembered.delete(blob.key);
    this.remembered.set(blob.key, chunks);
    if (this.remembered.size > this.rememberedLimit) this.remembered.delete(this.remembered.keys().next().value!);
  }
}

function uniqueDigests(digests: readonly Digest[]): Digest[] {
  const seen = new DigestSet();
  return digests.filter((d) => seen.add(d));
}

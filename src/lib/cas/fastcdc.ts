/**
 * Content-defined chunking with FastCDC (Xia et al., "The Design of Fast Content-Defined Chunking
 * for Data Deduplication Based Storage Systems", 2020): a gear rolling hash, cut-point skipping below
 * the minimum size and normalized chunking (a harder mask before the average size, an easier one
 * after it). Chunk boundaries depend on the bytes around them only, so a change in the middle of a
 * large blob changes the chunks near it and leaves the others as they were: what SplitBlob and
 * SpliceBlob (REAPI 2.4+) need to move only the changed parts of a large, slightly changed blob.
 *
 * Parameters follow REAPI's FastCdc2020Params: an average size (a power of two from 1 KiB to 1 MiB,
 * 512 KiB by default), minimum = average / 4, maximum = average * 4, and a seed for the gear table.
 * The gear table is ours, generated deterministically from the seed (SHA-256 of
 * `bzutil-fastcdc-gear/<seed>/<index>`), and the hash is 32 bits wide, which is enough for masks
 * of up to 22 bits: chunks cut here are valid chunks for any server, but another implementation's
 * table would cut elsewhere (deduplication across implementations is not promised, correctness does
 * not depend on it).
 *
 * Memory is bounded: the streaming chunker keeps at most one maximum-size chunk plus the piece
 * being pushed.
 */
import { createHash } from 'node:crypto';

export interface FastCdcParams {
  /** Target average chunk size: a power of two between 1 KiB and 1 MiB. */
  avgChunkSizeBytes: number;
  /** Selects the gear table. @default 0 */
  seed?: number;
}

/** REAPI's recommended average chunk size for FAST_CDC_2020. */
export const DEFAULT_AVG_CHUNK_SIZE_BYTES = 512 * 1024;
export const MIN_AVG_CHUNK_SIZE_BYTES = 1024;
export const MAX_AVG_CHUNK_SIZE_BYTES = 1024 * 1024;

/** The minimum and maximum chunk sizes that go with an average, as REAPI defines them. */
export function chunkSizeBounds(avgChunkSizeBytes: number): { min: number; avg: number; max: number } {
  return { min: avgChunkSizeBytes / 4, avg: avgChunkSizeBytes, max: avgChunkSizeBytes * 4 };
}

/** TypeError unless `params` are parameters this implementation chunks with. */
export function validateFastCdcParams(params: FastCdcParams): void {
  const avg = params.avgChunkSizeBytes;
  if (!Number.isSafeInteger(avg) || avg < MIN_AVG_CHUNK_SIZE_BYTES || avg > MAX_AVG_CHUNK_SIZE_BYTES || (avg & (avg - 1)) !== 0) {
    throw new TypeError(`FastCDC average chunk size ${JSON.stringify(avg)} must be a power of two from ${MIN_AVG_CHUNK_SIZE_BYTES} to ${MAX_AVG_CHUNK_SIZE_BYTES}`);
  }
  const seed = params.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new TypeError(`FastCDC seed ${JSON.stringify(seed)} must be a 32-bit unsigned integer`);
}

const gearTables = new Map<number, Int32Array>();

/** The 256-entry gear table for `seed`, computed once per seed. */
export function gearTable(seed = 0): Int32Array {
  let table = gearTables.get(seed);
  if (!table) {
    table = new Int32Array(256);
    for (let i = 0; i < 256; i++) table[i] = createHash('sha256').update(`bzutil-fastcdc-gear/${seed}/${i}`).digest().readInt32BE(0);
    gearTables.set(seed, table);
  }
  return table;
}

/** A mask of the `bits` highest bits of a 32-bit word, as an int32 (the gear hash's best-mixed bits). */
function topBitsMask(bits: number): number {
  return (0xffffffff << (32 - bits)) | 0;
}

/**
 * Finds cut points in a buffer. Stateless between calls: each call starts a new chunk at `start`.
 */
export class FastCdcCutter {
  readonly min: number;
  readonly avg: number;
  readonly max: number;
  private readonly gear: Int32Array;
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(params: FastCdcParams) {
    validateFastCdcParams(params);
    const { min, avg, max } = chunkSizeBounds(params.avgChunkSizeBytes);
    this.min = min;
    this.avg = avg;
    this.max = max;
    this.gear = gearTable(params.seed ?? 0);
    const bits = Math.log2(avg);
    // Normalization level 2: two bits harder before the average size, two bits easier after it.
    this.maskS = topBitsMask(bits + 2);
    this.maskL = topBitsMask(bits - 2);
  }

  /**
   * Length of the chunk that starts at `start` in `buf[start, end)`, or -1 when no cut point was
   * found and more bytes could still move it (fewer than `max` bytes available and not `final`).
   */
  cut(buf: Uint8Array, start: number, end: number, final: boolean): number {
    const n = end - start;
    if (n <= this.min) return final ? n : -1;
    const gear = this.gear;
    const normal = start + Math.min(this.avg, n);
    const limit = start + Math.min(this.max, n);
    const maskS = this.maskS;
    const maskL = this.maskL;
    let h = 0;
    let i = start + this.min;
    for (; i < normal; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & maskS) === 0) return i - start + 1;
    }
    for (; i < limit; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & maskL) === 0) return i - start + 1;
    }
    if (n >= this.max || final) return limit - start;
    return -1;
  }
}

/**
 * Cuts a stream into chunks: push pieces as they arrive, take the chunks that are complete, and
 * `finish` for the last one. Chunks are views of internal buffers that are never written again.
 */
export class FastCdcChunker {
  private readonly cutter: FastCdcCutter;
  private rest: Uint8Array = new Uint8Array(0);

  constructor(params: FastCdcParams) {
    this.cutter = new FastCdcCutter(params);
  }

  /** The chunks completed by `data`. */
  push(data: Uint8Array): Uint8Array[] {
    if (data.length === 0) return [];
    const buf = this.rest.length === 0 ? data : Buffer.concat([this.rest, data]);
    return this.drain(buf, false);
  }

  /** The remaining chunk(s) at the end of the stream (none for an empty stream). */
  finish(): Uint8Array[] {
    return this.drain(this.rest, true);
  }

  private drain(buf: Uint8Array, final: boolean): Uint8Array[] {
    const out: Uint8Array[] = [];
    let start = 0;
    while (start < buf.length) {
      const length = this.cutter.cut(buf, start, buf.length, final);
      if (length < 0) break;
      out.push(buf.subarray(start, start + length));
      start += length;
    }
    this.rest = buf.subarray(start);
    return out;
  }
}

/** Chunks an in-memory buffer; the chunks are views of it. */
export function chunkBytes(data: Uint8Array, params: FastCdcParams): Uint8Array[] {
  const chunker = new FastCdcChunker(params);
  return [...chunker.push(data), ...chunker.finish()];
}

/** Chunks a stream, yielding each chunk as soon as its end is known. */
export async function* chunkStream(source: AsyncIterable<Uint8Array>, params: FastCdcParams): AsyncGenerator<Uint8Array> {
  const chunker = new FastCdcChunker(params);
  for await (const piece of source) yield* chunker.push(piece);
  yield* chunker.finish();
}

/**
 * Writing a streamed upload to its temporary file in batches, for FilesystemBlobStore.
 */
import type { FileHandle } from 'node:fs/promises';

/** Size of the batches a streamed upload is written in. */
const WRITE_BATCH_BYTES = 1024 * 1024;
/** Smallest batch buffer, for blobs that declare a tiny size (action cache keys may understate it). */
const MIN_WRITE_BATCH_BYTES = 4096;

/** The batch size for a blob that declares `sizeBytes`: no bigger than the blob, within bounds. */
export function writeBatchBytesFor(sizeBytes: number): number {
  return Math.min(WRITE_BATCH_BYTES, Math.max(sizeBytes, MIN_WRITE_BATCH_BYTES));
}

/**
 * Gathers a stream's chunks (16 KiB each from Bazel) into batches of up to `batchBytes` and writes
 * each batch while the next one fills. One write per small chunk made every chunk wait for a round
 * trip through libuv's thread pool, which bounded uploads far below what the disk and the network
 * can do. Chunks are copied into the batch (never kept), so a producer may reuse its buffers as soon
 * as `write` resolves; memory is two batches per upload, whatever the blob size.
 */
export class BatchingFileWriter {
  private current?: Buffer;
  private spare?: Buffer;
  private filledBytes = 0;
  private inFlight?: Promise<void>;

  constructor(
    private readonly handle: FileHandle,
    private readonly batchBytes: number,
  ) {}

  /**
   * Takes `chunk`; waits only when a full batch must wait for the previous write. An empty chunk
   * (the producer is pausing, see blob-store.ts) writes out the partial batch and releases both
   * buffers, so a parked upload holds a file and no memory.
   */
  async write(chunk: Uint8Array): Promise<void> {
    if (chunk.length === 0) {
      await this.flush();
      this.current = undefined;
      this.spare = undefined;
      return;
    }
    // Large chunks are copied too (about 0.1 ms per MiB): writing one in place would have to wait
    // for the disk before the next chunk could be received, since the producer owns its bytes.
    for (let offset = 0; offset < chunk.length; ) {
      const batch = (this.current ??= this.spare ?? Buffer.allocUnsafe(this.batchBytes));
      if (batch === this.spare) this.spare = undefined;
      const n = Math.min(chunk.length - offset, batch.length - this.filledBytes);
      batch.set(n === chunk.length ? chunk : chunk.subarray(offset, offset + n), this.filledBytes);
      this.filledBytes += n;
      offset += n;
      if (this.filledBytes === batch.length) await this.startWrite();
    }
  }

  /** Writes what is left and waits until every byte is written. */
  async flush(): Promise<void> {
    if (this.filledBytes > 0) await this.startWrite();
    await this.drain();
  }

  /** Waits for the write in flight, if any, ignoring its outcome (for cleanup after a failure). */
  async settle(): Promise<void> {
    await this.inFlight?.catch(() => {});
    this.inFlight = undefined;
  }

  private async startWrite(): Promise<void> {
    // The previous batch's buffer becomes free once its write is done.
    await this.drain();
    const batch = this.current!;
    const bytes = batch.subarray(0, this.filledBytes);
    this.current = undefined;
    this.filledBytes = 0;
    const written = writeFully(this.handle, bytes).then(() => {
      this.spare = batch;
    });
    // Observed by the next drain(); never an unhandled rejection meanwhile.
    written.catch(() => {});
    this.inFlight = written;
  }

  private async drain(): Promise<void> {
    const inFlight = this.inFlight;
    this.inFlight = undefined;
    await inFlight;
  }
}

/** Writes all of `chunk`, however many partial writes that takes. */
export async function writeFully(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}

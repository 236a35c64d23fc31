/**
 * Writing one blob to its temporary file, for FilesystemBlobStore: the file is created read-only
 * (nothing may change a stored blob in place), filled, marked trusted (blob-file-trust.ts), synced
 * if asked, and closed. The store then renames it into place.
 *
 * A small whole blob (at most SYNC_WRITE_MAX_BYTES, no fsync) is written with synchronous calls
 * on the event loop. Through the promise API each of its five steps (open, write, mark, close,
 * rename) is a round trip through libuv's thread pool plus a FileHandle and its promises: about
 * 150 µs of CPU per blob in all, against about 70 µs for the same calls made synchronously
 * (measured on this project's 2-core VM, ext4, page cache). On a local filesystem these calls only
 * touch the page cache, so the event loop waits a few tens of microseconds per blob; a streamed or
 * large blob, or a store that fsyncs, keeps the asynchronous path, where a slow disk cannot stall
 * other calls.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { StatusError } from '../errors/status-error.js';
import { abortable, throwIfAborted } from '../util/abort.js';
import { BatchingFileWriter, writeBatchBytesFor, writeFully } from './batching-file-writer.js';
import { markTrusted, markTrustedSync } from './blob-file-trust.js';

/** Largest whole blob written with synchronous calls (see the module comment). */
export const SYNC_WRITE_MAX_BYTES = 64 * 1024;

/** Whether writeTempBlobFile writes `data` with synchronous calls (given no fsync). */
export function isWrittenSync(data: Uint8Array | AsyncIterable<Uint8Array>): boolean {
  return data instanceof Uint8Array && data.length <= SYNC_WRITE_MAX_BYTES;
}

export interface TempBlobFileOptions {
  /** The blob's declared size (sizes the write batches of a stream). */
  declaredSizeBytes: number;
  /** Most bytes accepted; more fail with `overCapacity()`. */
  maxSizeBytes: number;
  overCapacity: () => StatusError;
  fsync: boolean;
  signal?: AbortSignal;
}

/**
 * Writes `data` to a new file at `tempPath` and closes it; returns the number of bytes written.
 * On failure the file may remain: the caller removes `tempPath`.
 */
export async function writeTempBlobFile(tempPath: string, data: Uint8Array | AsyncIterable<Uint8Array>, opts: TempBlobFileOptions): Promise<number> {
  if (data instanceof Uint8Array) {
    if (data.length > opts.maxSizeBytes) throw opts.overCapacity();
    if (isWrittenSync(data) && !opts.fsync) {
      writeSmallFileSync(tempPath, data);
      throwIfAborted(opts.signal);
      return data.length;
    }
  }
  let handle: FileHandle | undefined;
  let writer: BatchingFileWriter | undefined;
  try {
    handle = await fsp.open(tempPath, 'wx', 0o444);
    let writtenBytes = 0;
    if (data instanceof Uint8Array) {
      // A whole blob is written as it is: nothing follows it that could overlap with the write.
      await writeFully(handle, data);
      throwIfAborted(opts.signal);
      writtenBytes = data.length;
    } else {
      writer = new BatchingFileWriter(handle, writeBatchBytesFor(opts.declaredSizeBytes));
      for await (const chunk of abortable(data, opts.signal)) {
        writtenBytes += chunk.length;
        if (writtenBytes > opts.maxSizeBytes) throw opts.overCapacity();
        await writer.write(chunk);
      }
      await writer.flush();
    }
    await markTrusted(handle);
    if (opts.fsync) await handle.sync();
    const toClose = handle;
    handle = undefined;
    await toClose.close();
    return writtenBytes;
  } catch (err) {
    // Let a write in flight finish before the file is closed (and removed by the caller).
    await writer?.settle();
    await handle?.close().catch(() => {});
    throw err;
  }
}

function writeSmallFileSync(tempPath: string, data: Uint8Array): void {
  const fd = fs.openSync(tempPath, 'wx', 0o444);
  try {
    for (let offset = 0; offset < data.length; ) offset += fs.writeSync(fd, data, offset, data.length - offset);
    markTrustedSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

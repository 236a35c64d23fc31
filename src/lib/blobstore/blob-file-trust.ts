/**
 * Whether a content-addressed blob file on disk can be served without hashing it again.
 *
 * A FilesystemBlobStore writes each blob once, to a temporary file it then renames into place, and
 * the last thing it does to that file is set its modification time to a whole second plus exactly
 * half a second (a *mark*). Any later write to the file by another process (an action that got
 * write access, a tool, a disk repair) sets the modification time to the current clock, whose
 * nanoseconds are practically never exactly 500000000: the file is then *in doubt*, and the store
 * hashes it before serving it. A file that verifies gets its mark back (so it is hashed once, not
 * on every read); one that does not is dropped and reported missing, never served.
 *
 * Files written before marks existed, or copied in by hand, are in doubt once, at their first read.
 * The mark costs no memory per blob and one fstat per read, which the store does anyway to check
 * the size. It is not a signature: a process that can write the file and set its time back can
 * defeat it; the defence against actions is that they run as another uid (see README "Security
 * model"). On a filesystem that cannot store sub-second times, every file stays in doubt and
 * every read is verified: correct, slower, and logged once at open by `probeMarks`.
 */
import { randomUUID } from 'node:crypto';
import { type BigIntStats, futimesSync, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { hashStream } from '../digest/digest-function.js';
import type { Digest } from '../digest/digest.js';

const NS_PER_SECOND = 1_000_000_000n;
const MARK_NS = 500_000_000n;
const READ_CHUNK_BYTES = 1024 * 1024;

/** Sets the mark on an open blob file (modification time = now, rounded down to the second, + 0.5 s). */
export async function markTrusted(handle: FileHandle): Promise<void> {
  const seconds = Math.floor(Date.now() / 1000);
  // x + 0.5 is exact in a double for any realistic x, so the kernel stores exactly 500000000 ns.
  await handle.utimes(seconds, seconds + 0.5);
}

/** markTrusted for a file descriptor, synchronously (small blobs, blob-temp-file.ts). */
export function markTrustedSync(fd: number): void {
  const seconds = Math.floor(Date.now() / 1000);
  futimesSync(fd, seconds, seconds + 0.5);
}

/** True when the file's modification time still carries the mark. */
export function hasMark(stats: BigIntStats): boolean {
  return stats.mtimeNs % NS_PER_SECOND === MARK_NS;
}

/**
 * Hashes the whole file (one chunk in memory at a time) and compares it with `digest`. On a match
 * the mark is set again; the caller drops the blob on a mismatch.
 */
export async function verifyAndRemark(handle: FileHandle, digest: Digest, signal?: AbortSignal): Promise<boolean> {
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (let position = 0; ; ) {
      signal?.throwIfAborted();
      const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) return;
      position += bytesRead;
      yield chunk.subarray(0, bytesRead);
    }
  }
  const { hash, sizeBytes } = await hashStream(digest.digestFunction, chunks());
  if (hash !== digest.hash || sizeBytes !== digest.sizeBytes) return false;
  await markTrusted(handle);
  return true;
}

/** Whether marks survive on the filesystem under `dir` (false: every read of a doubted blob is hashed). */
export async function probeMarks(dir: string): Promise<boolean> {
  const probe = path.join(dir, `.mark-probe.${randomUUID()}`);
  const handle = await fsp.open(probe, 'wx', 0o600);
  try {
    await markTrusted(handle);
    return hasMark(await handle.stat({ bigint: true }));
  } finally {
    await handle.close().catch(() => {});
    await fsp.rm(probe, { force: true }).catch(() => {});
  }
}

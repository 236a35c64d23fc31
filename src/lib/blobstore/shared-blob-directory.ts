/**
 * One blob directory used by several processes at once (`serve apiserver --processes N`): each
 * process has its own FilesystemBlobStore over the same directory, with its own in-memory index.
 * Files are the truth; the indexes only know what their own process did. The rules that keep the
 * directory consistent and bounded without any coordination between the processes:
 *
 * - **A process owns what it wrote**, and evicts only that, within `max_size_bytes / N`: the N shares
 *   add up to at most `max_size_bytes` on disk. A file another process wrote is never deleted here.
 * - **At open**, process `rank` owns the files whose hash falls in its share (the first 8 hex digits
 *   modulo N), so that restarting the N processes neither double-counts nor orphans the old files.
 * - **An index miss asks the disk** (one stat): a file found there is remembered as another
 *   process's ("foreign"), neither counted nor evicted here, and forgotten when it reaches the least
 *   recently used end of this index. FindMissingBlobs asks the disk again for every foreign blob, so
 *   it never reports present a blob that its owner has since evicted.
 * - **A new blob is placed with link()**, which fails when the file exists, instead of rename(),
 *   which replaces it: a blob another process wrote is kept as it is (content-addressed: the bytes
 *   are the same) and stays that process's. Only the action cache, whose entries may be rewritten,
 *   then replaces the file, which stays its first writer's to evict.
 *
 * What this does not prevent: recency is per process, so a blob its owner has not used for a
 * while may be evicted although another process just served it (its next FindMissingBlobs there
 * says missing again, and Bazel uploads it again); and a process that finds a blob present at the
 * instant its owner evicts it may answer "stored" for a blob that is gone (the same next
 * FindMissingBlobs repairs it).
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';

export interface SharedDirectory {
  /** How many processes share the directory (N). */
  processes: number;
  /** This process's number, 0..N-1; the same across its restarts. */
  rank: number;
}

/** Throws a TypeError unless `shared` describes one of N >= 1 processes. */
export function checkSharedDirectory(shared: SharedDirectory): void {
  const { processes, rank } = shared;
  if (!Number.isSafeInteger(processes) || processes < 1 || !Number.isSafeInteger(rank) || rank < 0 || rank >= processes) {
    throw new TypeError(`Failed to open filesystem blob store: process ${rank} of ${processes} is not a valid share`);
  }
}

/** Whether process `shared.rank` owns the existing file of `hash` when it opens the directory. */
export function ownsAtOpen(shared: SharedDirectory, hash: string): boolean {
  return Number.parseInt(hash.slice(0, 8), 16) % shared.processes === shared.rank;
}

/** The size of the file at `file`, or undefined when there is none. */
export async function statBlobFile(file: string): Promise<number | undefined> {
  try {
    return (await fsp.stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Links `tempPath` to `finalPath` unless a file is there already; returns whether it did. The
 * temp file is removed when linked and kept otherwise (the caller decides what to do with it).
 * ENOENT (no directory yet) is thrown for the caller to create it.
 */
export async function linkIntoPlace(tempPath: string, finalPath: string, sync: boolean): Promise<boolean> {
  try {
    if (sync) fs.linkSync(tempPath, finalPath);
    else await fsp.link(tempPath, finalPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  if (sync) fs.unlinkSync(tempPath);
  else await fsp.unlink(tempPath);
  return true;
}

/**
 * The on-disk layout of a FilesystemBlobStore and the scan that finds its blobs at open.
 *
 * Layout: `<path>/<instance>/<digest function>/<hash[0..2]>/<hash>-<size>`, where `<instance>` is
 * `_` for the empty instance name and the percent-encoded name otherwise (`/`, `_` and `.` encoded,
 * so no instance directory can be `_` or start with `.`, which is left to the store's own entries).
 * A valid instance name may be 255 bytes, which percent-encoding can triple past any file system's
 * name limit: an encoding longer than MAX_ESCAPED_BYTES is replaced by `=` and the name's SHA-256
 * (`=` is always percent-encoded, so no short name collides), and the name itself is kept in the
 * directory's INSTANCE_NAME_FILE so that the scan at open finds the instance again.
 */
import { createHash } from 'node:crypto';
import { type Dirent, readdirSync, readFileSync, statSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Digest } from '../digest/digest.js';
import { type DigestFunction, isDigestFunctionName } from '../digest/digest-function.js';
import type { Logger } from '../util/logger.js';

const BLOB_FILE_NAME = /^([0-9a-f]+)-(\d+)$/;
/** Files scanned between two yields to the event loop at open. */
const SCAN_FILES_PER_YIELD = 1000;

/** Longest percent-encoded instance directory name; longer ones are hashed. */
const MAX_ESCAPED_BYTES = 128;
/** In a hashed instance directory: the instance name, as UTF-8. */
const INSTANCE_NAME_FILE = 'instance-name';

/**
 * `_` for the empty instance name, else the percent-encoded name with `_` and `.` encoded too, or
 * `=<sha256 hex of the name>` when that encoding is longer than MAX_ESCAPED_BYTES.
 */
export function escapeInstanceName(instanceName: string): string {
  if (instanceName === '') return '_';
  const escaped = encodeURIComponent(instanceName).replace(/[_.]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  return escaped.length <= MAX_ESCAPED_BYTES ? escaped : hashedDirName(instanceName);
}

function hashedDirName(instanceName: string): string {
  return '=' + createHash('sha256').update(instanceName).digest('hex');
}

/**
 * Records the instance name in its directory when the name is hashed (called once the directory
 * exists); a no-op for short names, whose directory name says it.
 */
export async function recordInstanceName(root: string, instanceName: string): Promise<void> {
  const dirName = escapeInstanceName(instanceName);
  if (!dirName.startsWith('=')) return;
  await fsp.writeFile(path.join(root, dirName, INSTANCE_NAME_FILE), instanceName);
}

function unescapeInstanceName(dirName: string, dir: string): string | undefined {
  if (dirName === '_') return '';
  if (dirName.startsWith('=')) {
    try {
      const name = readFileSync(path.join(dir, INSTANCE_NAME_FILE), 'utf8');
      return hashedDirName(name) === dirName ? name : undefined;
    } catch {
      return undefined;
    }
  }
  try {
    const name = decodeURIComponent(dirName);
    return escapeInstanceName(name) === dirName ? name : undefined;
  } catch {
    return undefined;
  }
}

/** Where the blob of this digest lives under `root`. */
export function blobFilePath(root: string, instanceName: string, fn: DigestFunction, hash: string, sizeBytes: number): string {
  return path.join(root, escapeInstanceName(instanceName), fn, hash.slice(0, 2), `${hash}-${sizeBytes}`);
}

export interface FoundBlob {
  digest: Digest;
  sizeBytes: number;
  mtimeMs: number;
}

/**
 * Hands `visit` the blobs under `root`, least recently modified first (in directory order with
 * `sizesFromFileNames`, which takes sizes from the file names instead of stat-ing every file, and
 * then hands each over as it is listed: a 1M-blob store left ~250 MB of listing in the old
 * generation until the next full collection when the whole list was built first).
 * Unexpected files and directories are logged and skipped. Uses synchronous readdir/stat calls,
 * yielding to the event loop every SCAN_FILES_PER_YIELD files: start-up over a large store is
 * nothing but these calls, and each one through the libuv thread pool (fs/promises) cost several
 * times the call itself.
 */
export async function scanBlobDirectory(root: string, opts: { sizesFromFileNames: boolean; logger: Logger }, visit: (blob: FoundBlob) => void): Promise<void> {
  const { sizesFromFileNames, logger } = opts;
  // Only stat-ed blobs are collected, to be sorted by age.
  const found: FoundBlob[] = [];
  let sinceYield = 0;
  for (const instanceEntry of readDirsSync(root)) {
    if (instanceEntry.name.startsWith('.')) continue;
    const instanceName = unescapeInstanceName(instanceEntry.name, path.join(root, instanceEntry.name));
    if (instanceName === undefined) {
      logger.warn('Ignoring unexpected directory in blob store', { path: path.join(root, instanceEntry.name) });
      continue;
    }
    const instanceDir = path.join(root, instanceEntry.name);
    for (const fnEntry of readDirsSync(instanceDir)) {
      if (!isDigestFunctionName(fnEntry.name)) continue;
      const fnDir = path.join(instanceDir, fnEntry.name);
      for (const prefixEntry of readDirsSync(fnDir)) {
        const prefixDir = path.join(fnDir, prefixEntry.name);
        for (const fileName of readdirSync(prefixDir)) {
          const m = BLOB_FILE_NAME.exec(fileName);
          const digest = m && m[1]!.startsWith(prefixEntry.name) ? tryDigest(instanceName, fnEntry.name, m[1]!, Number(m[2])) : undefined;
          // prefixDir is already normalised and a file name has no separator: no path.join per file.
          const blobPath = `${prefixDir}${path.sep}${fileName}`;
          if (!digest) {
            logger.warn('Ignoring unexpected file in blob store', { path: blobPath });
            continue;
          }
          if (sizesFromFileNames) {
            visit({ digest, sizeBytes: digest.sizeBytes, mtimeMs: 0 });
          } else {
            // Gone since the listing (deleted by hand): nothing to index.
            const st = statSync(blobPath, { throwIfNoEntry: false });
            if (st) found.push({ digest, sizeBytes: st.size, mtimeMs: st.mtimeMs });
          }
          if (++sinceYield >= SCAN_FILES_PER_YIELD) {
            sinceYield = 0;
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
        }
      }
    }
  }
  found.sort((a, b) => a.mtimeMs - b.mtimeMs);
  for (const blob of found) visit(blob);
}

function tryDigest(instanceName: string, fn: DigestFunction, hash: string, sizeBytes: number): Digest | undefined {
  try {
    // BLOB_FILE_NAME matched the hash as lowercase hex already.
    return Digest.create(instanceName, fn, hash, sizeBytes, 'digest', true);
  } catch {
    return undefined;
  }
}

function readDirsSync(dir: string): Dirent[] {
  return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory());
}

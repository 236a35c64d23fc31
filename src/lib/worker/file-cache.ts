/**
 * The worker's local, content-addressed cache of input files. Build actions share most of their
 * inputs (toolchains, headers, libraries), so each file is fetched from the CAS once, verified, stored
 * read-only under `<directory>/<hash>-<size>[-x]` and then hard-linked into every action directory
 * that needs it: a repeated input costs neither a transfer nor a copy.
 *
 * Hazards handled here:
 * - Concurrent requests for the same file share one download (the in-flight promise is keyed like the
 *   file), so two actions starting together do not fetch twice or race on the rename.
 * - Hard links share an inode with the cache entry, so entries are made read-only (0444, or 0555 for
 *   executables; the executable bit is part of the key because it is part of the inode) and stay
 *   owned by the worker: an action running as another, unprivileged uid can neither write nor chmod
 *   them. Where actions run as the worker's uid or as root, inputs are copied instead (`copy`).
 * - Eviction (least recently used, by total bytes) never removes an entry that is being linked; an
 *   evicted entry's existing hard links in action directories are unaffected.
 * - Files are written to a temporary name, hashed while written and renamed into place only when the
 *   hash and size match, so a torn or corrupt download is never served.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import type { Digest } from '../digest/digest.js';
import { newHasher } from '../digest/digest-function.js';
import { Code, StatusError, wrapStatus } from '../errors/status-error.js';
import { type Logger, silentLogger } from '../util/logger.js';

export interface FileCacheOptions {
  /** Directory holding the cache; must be on the same file system as the action directories. */
  directory: string;
  /** Where files are fetched from. */
  contentAddressableStorage: BlobStore;
  /** Upper bound on the bytes kept; least recently used entries go first. */
  maxSizeBytes: number;
  logger?: Logger;
}

interface Entry {
  sizeBytes: number;
  /** Number of link operations currently using the entry; pinned entries are not evicted. */
  pins: number;
}

const ENTRY_NAME = /^([0-9a-f]+)-(\d+)(-x)?$/;

export class FileCache {
  private readonly directory: string;
  private readonly tmpDirectory: string;
  private readonly contentAddressableStorage: BlobStore;
  private readonly maxSizeBytes: number;
  private readonly logger: Logger;
  /** Insertion order is recency order: a hit deletes and re-inserts its entry. */
  private readonly entries = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private totalSizeBytes = 0;

  private constructor(opts: FileCacheOptions) {
    this.directory = opts.directory;
    this.tmpDirectory = path.join(opts.directory, 'tmp');
    this.contentAddressableStorage = opts.contentAddressableStorage;
    this.maxSizeBytes = opts.maxSizeBytes;
    this.logger = opts.logger ?? silentLogger;
  }

  /**
   * Opens (creating if needed) the cache directory and adopts the entries a previous worker process
   * left there, oldest access first. Stray temporary files and unknown names are removed.
   */
  static async open(opts: FileCacheOptions): Promise<FileCache> {
    const cache = new FileCache(opts);
    await fsp.mkdir(cache.directory, { recursive: true });
    await fsp.rm(cache.tmpDirectory, { recursive: true, force: true });
    await fsp.mkdir(cache.tmpDirectory, { recursive: true });
    const found: { name: string; sizeBytes: number; atimeMs: number }[] = [];
    for (const name of await fsp.readdir(cache.directory)) {
      if (name === 'tmp') continue;
      const full = path.join(cache.directory, name);
      const m = ENTRY_NAME.exec(name);
      const st = await fsp.lstat(full).catch(() => undefined);
      if (!m || !st || !st.isFile() || st.size !== Number(m[2])) {
        await fsp.rm(full, { recursive: true, force: true });
        continue;
      }
      found.push({ name, sizeBytes: st.size, atimeMs: st.atimeMs });
    }
    found.sort((a, b) => a.atimeMs - b.atimeMs);
    for (const f of found) cache.insert(f.name, f.sizeBytes);
    await cache.evict();
    return cache;
  }

  /** Bytes currently held. */
  get sizeBytes(): number {
    return this.totalSizeBytes;
  }

  /** Whether the file is cached now (no fetch needed). */
  has(digest: Digest, isExecutable: boolean): boolean {
    return this.entries.has(entryName(digest, isExecutable));
  }

  /** The path of the cache entry for a file (which may not exist). */
  pathOf(digest: Digest, isExecutable: boolean): string {
    return path.join(this.directory, entryName(digest, isExecutable));
  }

  /**
   * Makes `targetPath` (which must not exist) a hard link to the cached copy of the file, fetching it
   * first if needed. Falls back to a copy where hard links are impossible (link limit reached).
   * NOT_FOUND from the CAS becomes FAILED_PRECONDITION with a MISSING violation for the blob.
   */
  async linkInto(digest: Digest, isExecutable: boolean, targetPath: string, opts: CallOptions = {}, copy = false): Promise<void> {
    const name = entryName(digest, isExecutable);
    const entry = await this.acquire(name, digest, isExecutable, opts);
    try {
      const source = path.join(this.directory, name);
      try {
        // `copy` when the action could write through a link into the cache (it runs as our uid or as root).
        if (copy) throw Object.assign(new Error('copy requested'), { code: 'EPERM' });
        await fsp.link(source, targetPath);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EMLINK' && code !== 'EXDEV' && code !== 'EPERM') throw err;
        await fsp.copyFile(source, targetPath);
        await fsp.chmod(targetPath, isExecutable ? 0o555 : 0o444);
      }
    } finally {
      entry.pins -= 1;
    }
    await this.evict();
  }

  /**
   * Returns the entry pinned, fetching it if absent. Checking and pinning happen in one synchronous
   * step, so an eviction running between our await points cannot remove an entry we are about to use.
   */
  private async acquire(name: string, digest: Digest, isExecutable: boolean, opts: CallOptions): Promise<Entry> {
    // Bounded: each round either pins or waits for a fetch; a lost race against eviction of a file
    // larger than the whole cache is the only reason for another round.
    for (let attempt = 0; attempt < 5; attempt++) {
      opts.signal?.throwIfAborted();
      const hit = this.entries.get(name);
      if (hit) {
        this.entries.delete(name);
        this.entries.set(name, hit);
        hit.pins += 1;
        return hit;
      }
      let pending = this.inFlight.get(name);
      if (!pending) {
        // The download is shared, so it is not tied to the first caller's signal: one action's
        // cancellation must not fail another's fetch of the same file.
        pending = this.fetch(name, digest, isExecutable).finally(() => this.inFlight.delete(name));
        this.inFlight.set(name, pending);
      }
      await abortable(pending, opts.signal);
    }
    throw StatusError.unavailable(`Failed to keep ${digest.toString()} in the file cache: it was evicted repeatedly while being linked`);
  }

  /**
   * Fetches into the cache. On a full disk (ENOSPC/EDQUOT) unpinned entries (inputs of no running
   * action) are evicted, least recently used first, and the fetch retried once.
   */
  private async fetch(name: string, digest: Digest, isExecutable: boolean): Promise<void> {
    try {
      await this.fetchOnce(name, digest, isExecutable);
    } catch (err) {
      const cause = err instanceof StatusError ? err.cause : err;
      const code = (cause as NodeJS.ErrnoException | undefined)?.code;
      if (code !== 'ENOSPC' && code !== 'EDQUOT') throw err;
      const freed = await this.evict(Math.max(digest.sizeBytes, 1024 * 1024));
      this.logger.warn('Disk full while fetching an input file; evicted unused cache entries', { digest: digest.toString(), freedBytes: freed });
      if (freed === 0) throw StatusError.resourceExhausted(`Failed to fetch file ${digest.toString()}: no space left on device`);
      await this.fetchOnce(name, digest, isExecutable);
    }
  }

  private async fetchOnce(name: string, digest: Digest, isExecutable: boolean): Promise<void> {
    const tmp = path.join(this.tmpDirectory, randomUUID());
    try {
      const hasher = newHasher(digest.digestFunction);
      let sizeBytes = 0;
      // The empty blob is always present by definition; no need to ask.
      const source = digest.isEmpty ? [] : this.contentAddressableStorage.read(digest);
      async function* hashed(): AsyncIterable<Uint8Array> {
        for await (const chunk of source) {
          hasher.update(chunk);
          sizeBytes += chunk.length;
          if (sizeBytes > digest.sizeBytes) break;
          yield chunk;
        }
      }
      await pipeline(hashed, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
      const hash = hasher.digest('hex');
      if (sizeBytes !== digest.sizeBytes || hash !== digest.hash) {
        throw new StatusError(
          Code.DATA_LOSS,
          `Failed to fetch ${digest.toString()}: the CAS returned ${sizeBytes > digest.sizeBytes ? 'more than ' : ''}${sizeBytes} bytes with hash ${hash}`,
        );
      }
      await fsp.chmod(tmp, isExecutable ? 0o555 : 0o444);
      await fsp.rename(tmp, path.join(this.directory, name));
      this.insert(name, digest.sizeBytes);
      this.logger.debug('Fetched input file', { digest: digest.toString() });
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      if (err instanceof StatusError && err.code === Code.NOT_FOUND) throw StatusError.missingBlobs([digest]);
      throw wrapStatus(err, `Failed to fetch file ${digest.toString()}`);
    }
  }

  private insert(name: string, sizeBytes: number): void {
    if (this.entries.has(name)) return;
    this.entries.set(name, { sizeBytes, pins: 0 });
    this.totalSizeBytes += sizeBytes;
  }

  /** Evicts unpinned entries, oldest first, down to capacity (and `extraBytes` below it); returns bytes freed. */
  private async evict(extraBytes = 0): Promise<number> {
    const target = this.maxSizeBytes - extraBytes;
    if (this.totalSizeBytes <= target) return 0;
    const victims: string[] = [];
    const before = this.totalSizeBytes;
    for (const [name, entry] of this.entries) {
      if (this.totalSizeBytes <= target) break;
      if (entry.pins > 0) continue;
      this.entries.delete(name);
      this.totalSizeBytes -= entry.sizeBytes;
      victims.push(name);
    }
    for (const name of victims) {
      await fsp.rm(path.join(this.directory, name), { force: true }).catch((err: unknown) => {
        this.logger.warn('Failed to remove evicted cache entry', { name, error: err });
      });
    }
    return before - this.totalSizeBytes;
  }
}

/** `<hash>-<size>[-x]`: the executable bit is part of the key because it is part of the inode. */
function entryName(digest: Digest, isExecutable: boolean): string {
  return `${digest.hash}-${digest.sizeBytes}${isExecutable ? '-x' : ''}`;
}

/** Waits for `promise`, or rejects with the signal's reason as soon as it fires. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

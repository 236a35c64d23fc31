/**
 * A content-addressed blob store on local disk, bounded by bytes with least-recently-used eviction.
 * It is the store of a single apiserver or a worker's local cache: blobs survive restarts (the index
 * is rebuilt by scanning the directory at open), large blobs stream through with bounded memory, and
 * a blob becomes visible only by an atomic rename once all its bytes are on disk, so a failed,
 * aborted or rejected upload (e.g. a VerifyingBlobStore mismatch) never leaves a partial blob.
 *
 * Layout (blob-directory-layout.ts): `<path>/<instance>/<digest function>/<hash[0..2]>/<hash>-<size>`.
 * Uploads in progress live in `<path>/.tmp`,
 * on the same filesystem so that the final rename is atomic; leftovers are removed at open.
 *
 * The store does not check that content matches its digest (stack a VerifyingBlobStore on top for
 * the CAS); the action cache keeps ActionResults under action digests whose size differs from the
 * content's. Capacity is accounted in bytes actually stored.
 *
 * An in-memory index (digest -> stored size, in recency order) answers `findMissing` without touching
 * the disk. After a restart, recency is approximated by file modification time.
 */
import { randomUUID } from 'node:crypto';
import { renameSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { Digest } from '../digest/digest.js';
import { Code, StatusError } from '../errors/status-error.js';
import { type Logger, silentLogger } from '../util/logger.js';
import { absentDigests } from './absent-digests.js';
import { abortable, throwIfAborted, toChunks } from '../util/abort.js';
import { type BlobStore, type CallOptions, type GetOptions, MAX_READ_CHUNK_BYTES, type ReadOptions } from './blob-store.js';
import { digestKeyScheme } from './lru-index.js';
import { resolveReadRange } from './read-range.js';
import { isWrittenSync, writeTempBlobFile } from './blob-temp-file.js';
import { blobFilePath, recordInstanceName, scanBlobDirectory } from './blob-directory-layout.js';
import { hasMark, probeMarks, verifyAndRemark } from './blob-file-trust.js';
import type { FilesystemBlobStoreOptions } from './filesystem-blob-store-options.js';
import { type SharedDirectory, checkSharedDirectory, linkIntoPlace, ownsAtOpen, statBlobFile } from './shared-blob-directory.js';
import { BlobIndex } from './blob-index.js';
import { fsError, notFound } from './filesystem-errors.js';

// The on-disk layout has its own module; re-exported for code importing it from here.
export { escapeInstanceName } from './blob-directory-layout.js';

export type { FilesystemBlobStoreOptions } from './filesystem-blob-store-options.js';

const TEMP_DIR_NAME = '.tmp';

export class FilesystemBlobStore implements BlobStore {
  /** Digest -> stored size in bytes, with recency for eviction (and, when shared, other processes' blobs). */
  private readonly index = new BlobIndex();
  /** This process's share of maxSizeBytes: all of it unless the directory is shared. */
  private readonly capacityBytes: number;
  private evicted = 0;
  /** Per-key queue serialising renames into place with eviction unlinks of the same file. */
  private readonly keyLocks = new Map<string, Promise<void>>();
  private readonly tempDir: string;
  /** Shard directories known to exist (bounded: instances x digest functions x 256). */
  private readonly createdDirs = new Set<string>();

  private constructor(
    private readonly root: string,
    maxSizeBytes: number,
    private readonly logger: Logger,
    private readonly fsync: boolean,
    private readonly verifyOnDoubt: boolean,
    /** Content-addressed: a blob file's size is its digest's. */
    private readonly sizesFromNames: boolean,
    private readonly shared: SharedDirectory | undefined,
  ) {
    this.capacityBytes = shared ? Math.floor(maxSizeBytes / shared.processes) : maxSizeBytes;
    // Each process empties its own temp directory at open, never another's uploads in progress.
    this.tempDir = path.join(root, shared ? `${TEMP_DIR_NAME}-p${shared.rank}` : TEMP_DIR_NAME);
  }

  /** Opens (creating if needed) the store at `opts.path` and rebuilds its index from the files there. */
  static async open(opts: FilesystemBlobStoreOptions): Promise<FilesystemBlobStore> {
    if (!Number.isSafeInteger(opts.maxSizeBytes) || opts.maxSizeBytes <= 0) {
      throw StatusError.invalidArgument(`Failed to open filesystem blob store: maxSizeBytes ${JSON.stringify(opts.maxSizeBytes)} is not a positive integer`, [
        { field: 'maxSizeBytes', description: 'Must be a positive integer' },
      ]);
    }
    if (opts.shared) checkSharedDirectory(opts.shared);
    const root = path.resolve(opts.path);
    const sizesFromNames = opts.sizesFromFileNames ?? false;
    const store = new FilesystemBlobStore(root, opts.maxSizeBytes, opts.logger ?? silentLogger, opts.fsync ?? false, opts.verifyOnDoubt ?? false, sizesFromNames, opts.shared);
    try {
      await fsp.mkdir(root, { recursive: true });
      // Uploads interrupted by a crash can never complete: start with an empty temp directory.
      await fsp.rm(store.tempDir, { recursive: true, force: true });
      await fsp.mkdir(store.tempDir, { recursive: true });
      await store.rebuildIndex(sizesFromNames);
      if (store.verifyOnDoubt && !(await probeMarks(store.tempDir))) {
        store.logger.warn('This filesystem does not keep sub-second modification times: every read of a blob will be hashed first');
      }
    } catch (err) {
      throw fsError(err, `Failed to open filesystem blob store at ${JSON.stringify(root)}`);
    }
    return store;
  }

  /** Bytes currently stored, as accounted by the index (in a shared directory: this process's blobs). */
  get sizeBytes(): number {
    return this.index.ownedBytes;
  }

  /** Number of blobs in the index (in a shared directory: this process's blobs). */
  get blobCount(): number {
    return this.index.ownedCount;
  }

  /** Blobs evicted since the store was opened. */
  get evictedBlobCount(): number {
    return this.evicted;
  }

  /** Waits for background deletions of evicted blobs; call before removing the directory. */
  async close(): Promise<void> {
    while (this.keyLocks.size > 0) await Promise.all([...this.keyLocks.values()]);
  }

  async get(digest: Digest, opts: GetOptions = {}): Promise<Uint8Array> {
    throwIfAborted(opts.signal);
    let sizeBytes = await this.lookup(digest);
    if (sizeBytes === undefined) {
      if (digest.isEmpty) return new Uint8Array(0);
      throw notFound(digest);
    }
    if (opts.maxBytes !== undefined && sizeBytes > opts.maxBytes) {
      throw StatusError.resourceExhausted(`Failed to get blob ${digest.toString()}: ${sizeBytes} bytes exceed the limit of ${opts.maxBytes}`);
    }
    let handle: FileHandle;
    ({ handle, sizeBytes } = await this.openChecked(digest, sizeBytes, opts.signal));
    let data: Buffer;
    try {
      data = await handle.readFile({ signal: opts.signal });
    } catch (err) {
      throw this.readError(err, digest);
    } finally {
      await handle.close().catch(() => {});
    }
    if (data.length !== sizeBytes) throw await this.corrupt(digest, data.length);
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  }

  /**
   * Opens a blob file for reading after checking that its size is the stored size and, in a
   * content-addressed store, that it is not in doubt (blob-file-trust.ts): a doubted file is hashed
   * first. A file that fails either check is dropped and reported NOT_FOUND.
   */
  private async openChecked(digest: Digest, sizeBytes: number, signal?: AbortSignal): Promise<{ handle: FileHandle; sizeBytes: number }> {
    let handle: FileHandle;
    try {
      handle = await fsp.open(this.blobPath(digest), 'r');
    } catch (err) {
      throw this.readError(err, digest);
    }
    try {
      const stats = await handle.stat({ bigint: true });
      // In a shared directory another process may have rewritten an action cache entry: take its size.
      if (Number(stats.size) !== sizeBytes && this.shared && !this.sizesFromNames) sizeBytes = this.index.resize(digest, Number(stats.size));
      if (Number(stats.size) !== sizeBytes) throw await this.corrupt(digest, Number(stats.size));
      if (this.verifyOnDoubt && !hasMark(stats) && !(await verifyAndRemark(handle, digest, signal))) {
        throw await this.corrupt(digest, sizeBytes, 'its content no longer matches its digest');
      }
      return { handle, sizeBytes };
    } catch (err) {
      await handle.close().catch(() => {});
      throw err instanceof StatusError ? err : fsError(err, `Failed to read blob ${digest.toString()}`);
    }
  }

  /**
   * A blob file whose size is not the size it was stored with was changed behind our back (another
   * process, a disk fault): it is dropped so that clients upload it again, never served.
   */
  private async corrupt(digest: Digest, foundBytes: number, why = 'its size changed'): Promise<StatusError> {
    this.logger.warn('Blob file changed on disk; dropping it', { digest: digest.toString(), instanceName: digest.instanceName, foundBytes, why });
    await this.withKeyLock(digest.key, async () => {
      this.index.forget(digest);
      await fsp.unlink(this.blobPath(digest)).catch(() => {});
    });
    return notFound(digest);
  }

  async *read(digest: Digest, opts: ReadOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    throwIfAborted(opts.signal);
    const sizeBytes = await this.lookup(digest);
    if (sizeBytes === undefined) {
      if (digest.isEmpty) {
        resolveReadRange(digest, 0, opts);
        return;
      }
      throw notFound(digest);
    }
    let range = resolveReadRange(digest, sizeBytes, opts);
    if (range.start === range.end) return;
    const opened = await this.openChecked(digest, sizeBytes, opts.signal);
    const handle = opened.handle;
    // Strictly pull-based: one chunk is read only when the consumer asks for it, so at most one
    // chunk per reader is in memory whatever the blob size.
    try {
      if (opened.sizeBytes !== sizeBytes) range = resolveReadRange(digest, opened.sizeBytes, opts);
      for (let position = range.start; position < range.end; ) {
        throwIfAborted(opts.signal);
        const chunk = Buffer.allocUnsafe(Math.min(MAX_READ_CHUNK_BYTES, range.end - position));
        let bytesRead: number;
        try {
          ({ bytesRead } = await handle.read(chunk, 0, chunk.length, position));
        } catch (err) {
          throw fsError(err, `Failed to read blob ${digest.toString()}`);
        }
        if (bytesRead === 0) {
          throw new StatusError(
            Code.DATA_LOSS,
            `Failed to read blob ${digest.toString()}: its file ended after ${position - range.start} of ${range.end - range.start} bytes`,
          );
        }
        position += bytesRead;
        yield chunk.subarray(0, bytesRead);
      }
    } finally {
      await handle.close().catch(() => {});
    }
  }

  async put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions = {}): Promise<void> {
    throwIfAborted(opts.signal);
    if (digest.isEmpty) {
      // Always present and never stored; still consume the source so that its errors surface.
      for await (const _ of abortable(toChunks(data), opts.signal));
      return;
    }
    try {
      await this.putOnce(digest, data, opts);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOSPC' && code !== 'EDQUOT') throw fsError(err, `Failed to store blob ${digest.toString()}`);
      // The disk is fuller than our capacity says (other files share it): make room from the
      // least recently used end. A whole blob is written again at once; a stream cannot be
      // replayed, so its client gets RESOURCE_EXHAUSTED and finds the room on its retry.
      const freed = await this.freeSpace(Math.max(digest.sizeBytes, 1024 * 1024), digest);
      this.logger.warn('Disk full while storing a blob; evicted least recently used blobs', { digest: digest.toString(), freedBytes: freed });
      if (freed === 0 || !(data instanceof Uint8Array)) throw fsError(err, `Failed to store blob ${digest.toString()}`);
      try {
        await this.putOnce(digest, data, opts);
      } catch (retryErr) {
        throw fsError(retryErr, `Failed to store blob ${digest.toString()}`);
      }
    }
  }

  /** Evicts least recently used blobs (never `keep`) until `bytes` are freed; waits for the unlinks. */
  private async freeSpace(bytes: number, keep: Digest): Promise<number> {
    let freed = 0;
    const victims: Digest[] = [];
    for (const [digest, , foreign] of this.index.oldestFirst()) {
      if (freed >= bytes) break;
      if (foreign || digestKeyScheme.equals(digest, keep)) continue;
      freed += this.index.forget(digest) ?? 0;
      victims.push(digest);
    }
    await Promise.all(victims.map((digest) => this.deleteEvicted(digest)));
    return freed;
  }

  /** One attempt at storing a blob; errors are raw (the caller wraps them, after handling ENOSPC). */
  private async putOnce(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions): Promise<void> {
    const tempPath = path.join(this.tempDir, `${digest.hash}-${digest.sizeBytes}.${randomUUID()}`);
    try {
      const writtenBytes = await writeTempBlobFile(tempPath, data, {
        declaredSizeBytes: digest.sizeBytes,
        maxSizeBytes: this.capacityBytes,
        overCapacity: () => this.overCapacity(digest),
        fsync: this.fsync,
        signal: opts.signal,
      });
      await this.commit(digest, tempPath, writtenBytes, !this.fsync && isWrittenSync(data));
    } catch (err) {
      await fsp.rm(tempPath, { force: true }).catch(() => {});
      throw err;
    }
  }

  async findMissing(digests: readonly Digest[], opts: CallOptions = {}): Promise<Digest[]> {
    throwIfAborted(opts.signal);
    // Present blobs are about to be referenced by the caller: refresh them so they are not evicted first.
    if (!this.shared) return absentDigests(digests, (d) => this.index.touch(d) !== undefined);
    // Shared directory: what this process did not write is asked of the disk, every time.
    const unsure = digests.filter((d) => !d.isEmpty && !this.index.touchOwned(d));
    const onDisk = new Set<string>();
    await Promise.all(unsure.map(async (d) => ((await this.discover(d, true)) !== undefined ? onDisk.add(d.key) : undefined)));
    throwIfAborted(opts.signal);
    return absentDigests(digests, (d) => onDisk.has(d.key) || this.index.isOwned(d));
  }

  private overCapacity(digest: Digest): StatusError {
    const share = this.shared ? ` (this process's share of ${this.shared.processes})` : '';
    return StatusError.resourceExhausted(`Failed to store blob ${digest.toString()}: more than ${this.capacityBytes} bytes, the filesystem store's capacity${share}`);
  }

  /** The stored size of `digest`, marking it most recently used; in a shared directory an index miss asks the disk. */
  private async lookup(digest: Digest): Promise<number | undefined> {
    const sizeBytes = this.index.touch(digest);
    if (sizeBytes !== undefined) return sizeBytes;
    return this.shared && !digest.isEmpty ? this.discover(digest, false) : undefined;
  }

  /**
   * Another process's blob, found on disk (stat) and indexed as foreign; undefined when absent.
   * `recheck`: a foreign entry already indexed is asked for again, and dropped when gone.
   */
  private async discover(digest: Digest, recheck: boolean): Promise<number | undefined> {
    const known = this.index.peek(digest);
    if (known !== undefined && (this.index.isOwned(digest) || !recheck)) return known;
    const sizeBytes = await statBlobFile(this.blobPath(digest)).catch(() => undefined);
    if (this.index.isOwned(digest)) return this.index.peek(digest); // committed here meanwhile
    if (sizeBytes === undefined || (this.sizesFromNames && sizeBytes !== digest.sizeBytes)) {
      if (!this.keyLocks.has(digest.key)) this.index.forget(digest);
      return undefined;
    }
    this.index.addForeign(digest, sizeBytes);
    return sizeBytes;
  }

  /**
   * Renames the finished temp file into place and accounts it once, then evicts beyond capacity.
   * `sync`: a small blob written synchronously is renamed synchronously too (blob-temp-file.ts).
   */
  private commit(digest: Digest, tempPath: string, sizeBytes: number, sync: boolean): Promise<void> {
    const finalPath = this.blobPath(digest);
    return this.withKeyLock(digest.key, async () => {
      // Shared directory: never replace a file another process wrote (shared-blob-directory.ts).
      const exclusive = this.shared !== undefined && !this.index.isOwned(digest);
      if (!(await this.renameIntoPlace(tempPath, finalPath, digest.instanceName, sync, exclusive))) {
        if (this.sizesFromNames) await fsp.rm(tempPath, { force: true });
        else await fsp.rename(tempPath, finalPath);
        this.index.addForeign(digest, sizeBytes);
        return;
      }
      // A concurrent upload of the same blob may have committed first: replace, don't double count.
      this.index.own(digest, sizeBytes);
      this.evict(digest);
    });
  }

  /**
   * Renames a finished temp file to its final path, creating the shard directory the first time
   * (a `mkdir -p` per commit cost a thread-pool round trip for every small blob); if the directory
   * was removed behind our back, it is created again.
   */
  private async renameIntoPlace(tempPath: string, finalPath: string, instanceName: string, sync: boolean, exclusive: boolean): Promise<boolean> {
    const place = async (allowSync: boolean): Promise<boolean> => {
      if (exclusive) return linkIntoPlace(tempPath, finalPath, allowSync && sync);
      if (allowSync && sync) renameSync(tempPath, finalPath);
      else await fsp.rename(tempPath, finalPath);
      return true;
    };
    const dir = path.dirname(finalPath);
    if (this.createdDirs.has(dir)) {
      try {
        return await place(true);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.createdDirs.delete(dir);
      }
    }
    await fsp.mkdir(dir, { recursive: true });
    await recordInstanceName(this.root, instanceName);
    this.createdDirs.add(dir);
    return place(false);
  }

  /**
   * Drops least-recently used blobs from the index until within capacity; files are deleted in the
   * background. Another process's blobs met on the way are only forgotten (asked of the disk again when needed).
   */
  private evict(keep: Digest): void {
    for (const [digest, sizeBytes, foreign] of this.index.oldestFirst()) {
      if (this.index.ownedBytes <= this.capacityBytes) break;
      if (digestKeyScheme.equals(digest, keep)) continue;
      this.index.forget(digest);
      if (foreign) continue;
      this.evicted++;
      this.logger.debug('Evicting blob', { digest: digest.toString(), instanceName: digest.instanceName, sizeBytes });
      void this.deleteEvicted(digest);
    }
  }

  /** Deletes the file of a blob dropped from the index, after any commit of the same key. */
  private deleteEvicted(digest: Digest): Promise<void> {
    return this.withKeyLock(digest.key, async () => {
      // Re-uploaded since it was chosen for eviction: the new file must stay. (Found on disk as
      // another process's meanwhile, in a shared directory: it is this one's file, and it goes.)
      if (this.index.isOwned(digest)) return;
      this.index.forget(digest);
      try {
        await fsp.unlink(this.blobPath(digest));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.warn('Failed to delete evicted blob', { digest: digest.toString(), err });
      }
    });
  }

  private withKeyLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.keyLocks.get(key) ?? Promise.resolve();
    const result = previous.then(fn);
    const settled = result.then(
      () => {},
      () => {},
    );
    this.keyLocks.set(key, settled);
    void settled.then(() => {
      if (this.keyLocks.get(key) === settled) this.keyLocks.delete(key);
    });
    return result;
  }

  private readError(err: unknown, digest: Digest): unknown {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      // Deleted behind our back (or by a concurrent eviction): forget it, unless a re-upload is committing.
      if (!this.keyLocks.has(digest.key)) {
        if (this.index.forget(digest) !== undefined) {
          this.logger.warn('Blob in the index was missing from disk', { digest: digest.toString(), instanceName: digest.instanceName });
        }
      }
      return notFound(digest);
    }
    return fsError(err, `Failed to read blob ${digest.toString()}`);
  }

  private blobPath(digest: Digest): string {
    return blobFilePath(this.root, digest.instanceName, digest.digestFunction, digest.hash, digest.sizeBytes);
  }

  /** Indexes the blobs already on disk, oldest first, then evicts down to the capacity. */
  private async rebuildIndex(sizesFromFileNames: boolean): Promise<void> {
    let newest: Digest | undefined;
    await scanBlobDirectory(this.root, { sizesFromFileNames, logger: this.logger }, (s) => {
      // A shared directory: this process's share of the files (the others are found on disk when asked for).
      if (this.shared && !ownsAtOpen(this.shared, s.digest.hash)) return;
      this.index.own(s.digest, s.sizeBytes);
      newest = s.digest;
    });
    this.logger.info('Opened filesystem blob store', { path: this.root, blobCount: this.index.ownedCount, sizeBytes: this.index.ownedBytes, ...(this.shared && { share: `${this.shared.rank + 1}/${this.shared.processes}` }) });
    // The capacity may have been lowered since the last run.
    if (newest) this.evict(newest);
  }
}

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
import { Code, StatusError, isAbortError } from '../errors/status-error.js';
import { type Logger, silentLogger } from '../util/logger.js';
import { absentDigests } from './absent-digests.js';
import { abortable, throwIfAborted, toChunks } from '../util/abort.js';
import { type BlobStore, type CallOptions, type GetOptions, MAX_READ_CHUNK_BYTES, type ReadOptions } from './blob-store.js';
import { LruIndex, digestKeyScheme } from './lru-index.js';
import { resolveReadRange } from './read-range.js';
import { isWrittenSync, writeTempBlobFile } from './blob-temp-file.js';
import { blobFilePath, recordInstanceName, scanBlobDirectory } from './blob-directory-layout.js';
import { hasMark, probeMarks, verifyAndRemark } from './blob-file-trust.js';

// The on-disk layout has its own module; re-exported for code importing it from here.
export { escapeInstanceName } from './blob-directory-layout.js';

export interface FilesystemBlobStoreOptions {
  /** Directory holding the blobs; created if absent. */
  path: string;
  /** Total bytes kept on disk; least-recently used blobs are deleted beyond it. */
  maxSizeBytes: number;
  logger?: Logger;
  /**
   * fsync each blob before it becomes visible. Off by default: a cache may lose its newest blobs on
   * power loss, and losing them only costs a re-upload.
   * @default false
   */
  fsync?: boolean;
  /**
   * Open without a stat per file: each blob's size is read from its file name, and recency after a
   * restart is the order the directories list files in rather than modification time. Stat was
   * 70% of opening a 1M-blob store (14 s -> 4 s without). Only for a content-addressed store whose
   * blobs are verified before they are stored (the CAS behind a VerifyingBlobStore): the action
   * cache keeps results under action digests, whose sizes are not the files' sizes.
   * @default false
   */
  sizesFromFileNames?: boolean;
  /**
   * A content-addressed store (the CAS, not the action cache): a blob file that may have been
   * changed since it was stored is hashed before it is served (blob-file-trust.ts). @default false
   */
  verifyOnDoubt?: boolean;
}

const TEMP_DIR_NAME = '.tmp';

export class FilesystemBlobStore implements BlobStore {
  /** Digest -> stored size in bytes, with recency for eviction. */
  private readonly index = new LruIndex<number, Digest>(digestKeyScheme);
  private storedSizeBytes = 0;
  private evicted = 0;
  /** Per-key queue serialising renames into place with eviction unlinks of the same file. */
  private readonly keyLocks = new Map<string, Promise<void>>();
  private readonly tempDir: string;
  /** Shard directories known to exist (bounded: instances x digest functions x 256). */
  private readonly createdDirs = new Set<string>();

  private constructor(
    private readonly root: string,
    private readonly maxSizeBytes: number,
    private readonly logger: Logger,
    private readonly fsync: boolean,
    private readonly verifyOnDoubt: boolean,
  ) {
    this.tempDir = path.join(root, TEMP_DIR_NAME);
  }

  /** Opens (creating if needed) the store at `opts.path` and rebuilds its index from the files there. */
  static async open(opts: FilesystemBlobStoreOptions): Promise<FilesystemBlobStore> {
    if (!Number.isSafeInteger(opts.maxSizeBytes) || opts.maxSizeBytes <= 0) {
      throw StatusError.invalidArgument(`Failed to open filesystem blob store: maxSizeBytes ${JSON.stringify(opts.maxSizeBytes)} is not a positive integer`, [
        { field: 'maxSizeBytes', description: 'Must be a positive integer' },
      ]);
    }
    const root = path.resolve(opts.path);
    const store = new FilesystemBlobStore(root, opts.maxSizeBytes, opts.logger ?? silentLogger, opts.fsync ?? false, opts.verifyOnDoubt ?? false);
    try {
      await fsp.mkdir(root, { recursive: true });
      // Uploads interrupted by a crash can never complete: start with an empty temp directory.
      await fsp.rm(store.tempDir, { recursive: true, force: true });
      await fsp.mkdir(store.tempDir, { recursive: true });
      await store.rebuildIndex(opts.sizesFromFileNames ?? false);
      if (store.verifyOnDoubt && !(await probeMarks(store.tempDir))) {
        store.logger.warn('This filesystem does not keep sub-second modification times: every read of a blob will be hashed first');
      }
    } catch (err) {
      throw fsError(err, `Failed to open filesystem blob store at ${JSON.stringify(root)}`);
    }
    return store;
  }

  /** Bytes currently stored, as accounted by the index. */
  get sizeBytes(): number {
    return this.storedSizeBytes;
  }

  /** Number of blobs in the index. */
  get blobCount(): number {
    return this.index.size;
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
    const sizeBytes = this.touch(digest);
    if (sizeBytes === undefined) {
      if (digest.isEmpty) return new Uint8Array(0);
      throw notFound(digest);
    }
    if (opts.maxBytes !== undefined && sizeBytes > opts.maxBytes) {
      throw StatusError.resourceExhausted(`Failed to get blob ${digest.toString()}: ${sizeBytes} bytes exceed the limit of ${opts.maxBytes}`);
    }
    const handle = await this.openChecked(digest, sizeBytes, opts.signal);
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
  private async openChecked(digest: Digest, sizeBytes: number, signal?: AbortSignal): Promise<FileHandle> {
    let handle: FileHandle;
    try {
      handle = await fsp.open(this.blobPath(digest), 'r');
    } catch (err) {
      throw this.readError(err, digest);
    }
    try {
      const stats = await handle.stat({ bigint: true });
      if (Number(stats.size) !== sizeBytes) throw await this.corrupt(digest, Number(stats.size));
      if (this.verifyOnDoubt && !hasMark(stats) && !(await verifyAndRemark(handle, digest, signal))) {
        throw await this.corrupt(digest, sizeBytes, 'its content no longer matches its digest');
      }
      return handle;
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
      const sizeBytes = this.index.delete(digest);
      if (sizeBytes !== undefined) this.storedSizeBytes -= sizeBytes;
      await fsp.unlink(this.blobPath(digest)).catch(() => {});
    });
    return notFound(digest);
  }

  async *read(digest: Digest, opts: ReadOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    throwIfAborted(opts.signal);
    const sizeBytes = this.touch(digest);
    if (sizeBytes === undefined) {
      if (digest.isEmpty) {
        resolveReadRange(digest, 0, opts);
        return;
      }
      throw notFound(digest);
    }
    const range = resolveReadRange(digest, sizeBytes, opts);
    if (range.start === range.end) return;
    const handle = await this.openChecked(digest, sizeBytes, opts.signal);
    // Strictly pull-based: one chunk is read only when the consumer asks for it, so at most one
    // chunk per reader is in memory whatever the blob size.
    try {
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
    for (const [digest, sizeBytes] of this.index.oldestFirst()) {
      if (freed >= bytes) break;
      if (digestKeyScheme.equals(digest, keep)) continue;
      this.index.delete(digest);
      this.storedSizeBytes -= sizeBytes;
      freed += sizeBytes;
      victims.push(digest);
    }
    await Promise.all(
      victims.map((digest) =>
        this.withKeyLock(digest.key, async () => {
          if (!this.index.has(digest)) await fsp.unlink(this.blobPath(digest)).catch(() => {});
        }),
      ),
    );
    return freed;
  }

  /** One attempt at storing a blob; errors are raw (the caller wraps them, after handling ENOSPC). */
  private async putOnce(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions): Promise<void> {
    const tempPath = path.join(this.tempDir, `${digest.hash}-${digest.sizeBytes}.${randomUUID()}`);
    try {
      const writtenBytes = await writeTempBlobFile(tempPath, data, {
        declaredSizeBytes: digest.sizeBytes,
        maxSizeBytes: this.maxSizeBytes,
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
    return absentDigests(digests, (d) => this.touch(d) !== undefined);
  }

  private overCapacity(digest: Digest): StatusError {
    return StatusError.resourceExhausted(`Failed to store blob ${digest.toString()}: more than ${this.maxSizeBytes} bytes, the filesystem store's capacity`);
  }

  /**
   * Renames the finished temp file into place and accounts it once, then evicts beyond capacity.
   * `sync`: a small blob written synchronously is renamed synchronously too (blob-temp-file.ts).
   */
  private commit(digest: Digest, tempPath: string, sizeBytes: number, sync: boolean): Promise<void> {
    const finalPath = this.blobPath(digest);
    return this.withKeyLock(digest.key, async () => {
      await this.renameIntoPlace(tempPath, finalPath, digest.instanceName, sync);
      // A concurrent upload of the same blob may have committed first: replace, don't double count.
      const previous = this.index.set(digest, sizeBytes);
      this.storedSizeBytes += sizeBytes - (previous ?? 0);
      this.evict(digest);
    });
  }

  /**
   * Renames a finished temp file to its final path, creating the shard directory the first time
   * (a `mkdir -p` per commit cost a thread-pool round trip for every small blob); if the directory
   * was removed behind our back, it is created again.
   */
  private async renameIntoPlace(tempPath: string, finalPath: string, instanceName: string, sync: boolean): Promise<void> {
    const dir = path.dirname(finalPath);
    if (this.createdDirs.has(dir)) {
      try {
        if (sync) renameSync(tempPath, finalPath);
        else await fsp.rename(tempPath, finalPath);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.createdDirs.delete(dir);
      }
    }
    await fsp.mkdir(dir, { recursive: true });
    await recordInstanceName(this.root, instanceName);
    this.createdDirs.add(dir);
    await fsp.rename(tempPath, finalPath);
  }

  /** Drops least-recently used blobs from the index until within capacity; files are deleted in the background. */
  private evict(keep: Digest): void {
    for (const [digest, sizeBytes] of this.index.oldestFirst()) {
      if (this.storedSizeBytes <= this.maxSizeBytes) break;
      if (digestKeyScheme.equals(digest, keep)) continue;
      this.index.delete(digest);
      this.storedSizeBytes -= sizeBytes;
      this.evicted++;
      this.logger.debug('Evicting blob', { digest: digest.toString(), instanceName: digest.instanceName, sizeBytes });
      void this.withKeyLock(digest.key, async () => {
        // Re-uploaded since it was chosen for eviction: the new file must stay.
        if (this.index.has(digest)) return;
        try {
          await fsp.unlink(this.blobPath(digest));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.warn('Failed to delete evicted blob', { digest: digest.toString(), err });
        }
      });
    }
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

  /** Moves a key to the most-recently-used end; returns its stored size, or undefined when absent. */
  private touch(digest: Digest): number | undefined {
    return this.index.touch(digest);
  }

  private readError(err: unknown, digest: Digest): unknown {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      // Deleted behind our back (or by a concurrent eviction): forget it, unless a re-upload is committing.
      if (!this.keyLocks.has(digest.key)) {
        const sizeBytes = this.index.delete(digest);
        if (sizeBytes !== undefined) {
          this.storedSizeBytes -= sizeBytes;
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
    const found = await scanBlobDirectory(this.root, { sizesFromFileNames, logger: this.logger });
    for (const s of found) {
      this.index.set(s.digest, s.sizeBytes);
      this.storedSizeBytes += s.sizeBytes;
    }
    this.logger.info('Opened filesystem blob store', { path: this.root, blobCount: this.index.size, sizeBytes: this.storedSizeBytes });
    // The capacity may have been lowered since the last run.
    const newest = found.at(-1);
    if (newest) this.evict(newest.digest);
  }
}

function notFound(digest: Digest): StatusError {
  return StatusError.notFound(`Blob ${digest.toString()} not found`);
}

/** Keeps StatusErrors and AbortErrors; maps a full disk to RESOURCE_EXHAUSTED and anything else to INTERNAL. */
function fsError(err: unknown, step: string): unknown {
  if (err instanceof StatusError || isAbortError(err)) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return StatusError.resourceExhausted(`${step}: no space left on device (${code})`);
  const message = err instanceof Error ? err.message : String(err);
  return StatusError.internal(`${step}: ${message}`, err);
}

/**
 * Keeps small blobs in append-only pack files instead of one file each, and hands larger ones to
 * `backend`. On a per-file store a blob of a few hundred bytes costs five file-system calls (open,
 * write, the trust mark, close, rename) and an inode; in a C3-batch profile those calls were ~45%
 * of the apiserver's main thread. Here a small blob is one positioned write to the open pack and an
 * index entry, and a read is one positioned read.
 *
 * - Records describe themselves (pack-file.ts): at open the packs are scanned and the index rebuilt
 *   from them; a torn tail (a crash mid-append) is truncated, a record whose CRC fails is skipped.
 * - Every read hashes the record's payload against its digest (small blobs: microseconds); a record
 *   that does not match is dropped from the index and reported NOT_FOUND, never served. The store
 *   does not hash uploads: a VerifyingBlobStore above it does (createStorage adds one to the CAS).
 *   So it holds content-addressed blobs only, never the action cache.
 * - The index is in memory (digest -> pack, offset), bounded by `maxIndexEntries`.
 * - Eviction: beyond `maxSizeBytes` of packs (or `maxIndexEntries` records), the oldest pack is
 *   dropped whole. Its records used (uploaded, read or found) since the newer half of the packs
 *   began are first copied into the newest pack, at most half of the dropped pack's bytes: FIFO by
 *   pack with a second chance for hot blobs. Memory does not grow with pack size.
 *
 * One process per pack directory: the index lives in this process and appends are not locked
 * against other processes.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { type Digest, DigestSet } from '../digest/digest.js';
import { newHasher } from '../digest/digest-function.js';
import { StatusError } from '../errors/status-error.js';
import { abortable, throwIfAborted, toChunks } from '../util/abort.js';
import { type Logger, silentLogger } from '../util/logger.js';
import { type BlobStore, type CallOptions, type GetOptions, type ReadOptions } from './blob-store.js';
import { notFound } from './filesystem-errors.js';
import { LruIndex, digestKeyScheme } from './lru-index.js';
import { encodeRecord, scanPack } from './pack-file.js';
import { resolveReadRange, sliceChunks } from './read-range.js';

const readAt = promisify(fs.read);

export interface PackedBlobStoreOptions {
  /** Directory of the pack files; created if absent. */
  path: string;
  /** Bytes of pack files kept; the oldest pack is dropped beyond it. */
  maxSizeBytes: number;
  /** Blobs of at most this many bytes go into packs, larger ones to the backend. @default 64 KiB */
  maxBlobSizeBytes?: number;
  /** A pack is closed for appends at this size. @default maxSizeBytes / 16, within [1 MiB, 256 MiB], at most maxSizeBytes / 4 */
  packSizeBytes?: number;
  /** Most records indexed (each costs ~300 bytes of memory, its digest included). @default maxSizeBytes / 1 KiB */
  maxIndexEntries?: number;
  /** fdatasync each append before acknowledging it. @default false */
  fsync?: boolean;
  logger?: Logger;
}

interface Pack {
  seq: number;
  file: string;
  fd: number;
  sizeBytes: number;
  /** Digests appended, in order: what eviction walks (the index says which are still here). */
  digests: Digest[];
  /** Reads in flight; a dropped pack's descriptor is closed when they are done. */
  refs: number;
  dropped: boolean;
}

interface Entry {
  pack: Pack;
  offset: number;
  headerBytes: number;
  /** Sequence number of the newest pack when the record was last used. */
  usedIn: number;
}

const PACK_NAME = /^(\d{12})\.pack$/;
/** Largest max_blob_size_bytes: a packed blob is held whole in memory. */
const MAX_PACKED_BLOB_BYTES = 16 * 1024 * 1024;

export class PackedBlobStore implements BlobStore {
  private readonly index = new LruIndex<Entry, Digest>(digestKeyScheme);
  /** Oldest first; the last one takes appends. */
  private readonly packs: Pack[] = [];
  private totalBytes = 0;
  private evicted = 0;
  private closed = false;
  /** Copies of hot records out of dropped packs, in the order they were started. */
  private compaction: Promise<void> = Promise.resolve();
  private readonly maxBlobSizeBytes: number;
  private readonly packSizeBytes: number;
  private readonly maxIndexEntries: number;
  private readonly maxRecordsPerPack: number;
  private readonly logger: Logger;

  private constructor(
    private readonly dir: string,
    private readonly backend: BlobStore,
    private readonly maxSizeBytes: number,
    private readonly fsync: boolean,
    opts: PackedBlobStoreOptions,
  ) {
    this.maxBlobSizeBytes = opts.maxBlobSizeBytes ?? 64 * 1024;
    const MiB = 1024 * 1024;
    this.packSizeBytes = opts.packSizeBytes ?? Math.max(1, Math.min(Math.floor(maxSizeBytes / 4), Math.max(MiB, Math.min(256 * MiB, Math.floor(maxSizeBytes / 16)))));
    this.maxIndexEntries = opts.maxIndexEntries ?? Math.max(1024, Math.floor(maxSizeBytes / 1024));
    this.maxRecordsPerPack = Math.max(1, Math.floor(this.maxIndexEntries / 8));
    this.logger = opts.logger ?? silentLogger;
  }

  /** Opens (creating if needed) the packs at `opts.path`, rebuilding the index from them. */
  static async open(opts: PackedBlobStoreOptions, backend: BlobStore): Promise<PackedBlobStore> {
    for (const [field, value] of Object.entries({ maxSizeBytes: opts.maxSizeBytes, maxBlobSizeBytes: opts.maxBlobSizeBytes, packSizeBytes: opts.packSizeBytes, maxIndexEntries: opts.maxIndexEntries })) {
      if (value !== undefined && (!Number.isSafeInteger(value) || value <= 0)) {
        throw StatusError.invalidArgument(`Failed to open packed blob store: ${field} ${JSON.stringify(value)} is not a positive integer`, [{ field, description: 'Must be a positive integer' }]);
      }
    }
    if ((opts.maxBlobSizeBytes ?? 0) > MAX_PACKED_BLOB_BYTES) {
      const description = `At most ${MAX_PACKED_BLOB_BYTES} bytes: packed blobs are held whole in memory while written and read`;
      throw StatusError.invalidArgument(`Failed to open packed blob store: maxBlobSizeBytes ${opts.maxBlobSizeBytes} is too large`, [{ field: 'maxBlobSizeBytes', description }]);
    }
    const dir = path.resolve(opts.path);
    const store = new PackedBlobStore(dir, backend, opts.maxSizeBytes, opts.fsync ?? false, opts);
    try {
      await fsp.mkdir(dir, { recursive: true });
      await store.loadPacks();
      store.startPack();
    } catch (err) {
      store.closeAll();
      throw StatusError.internal(`Failed to open packed blob store at ${JSON.stringify(dir)}: ${(err as Error).message}`, err);
    }
    return store;
  }

  /** Bytes of pack files. */
  get sizeBytes(): number {
    return this.totalBytes;
  }
  /** Records in the index. */
  get blobCount(): number {
    return this.index.size;
  }
  /** Pack files, the one taking appends included. */
  get packCount(): number {
    return this.packs.length;
  }
  /** Records dropped with their pack since the store opened (copies forward not counted). */
  get evictedBlobCount(): number {
    return this.evicted;
  }

  /** Resolves once the records of dropped packs started so far are copied forward. */
  async compacted(): Promise<void> {
    await this.compaction;
  }

  /** Stops appends, waits for reads and copies in flight, closes the packs. The backend is closed by its owner. */
  async close(): Promise<void> {
    this.closed = true;
    await this.compaction;
    this.closeAll();
  }

  async get(digest: Digest, opts: GetOptions = {}): Promise<Uint8Array> {
    if (!this.isSmall(digest)) return this.backend.get(digest, opts);
    throwIfAborted(opts.signal);
    if (opts.maxBytes !== undefined && digest.sizeBytes > opts.maxBytes) {
      throw StatusError.resourceExhausted(`Failed to get blob ${digest.toString()}: ${digest.sizeBytes} bytes exceed the limit of ${opts.maxBytes}`);
    }
    return this.readVerified(digest);
  }

  async *read(digest: Digest, opts: ReadOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    if (!this.isSmall(digest)) {
      yield* this.backend.read(digest, opts);
      return;
    }
    throwIfAborted(opts.signal);
    // The whole record is read and verified, then sliced: a range is never served unverified.
    const data = await this.readVerified(digest);
    yield* sliceChunks(data, resolveReadRange(digest, data.length, opts));
  }

  async put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions = {}): Promise<void> {
    if (!this.isSmall(digest)) return this.backend.put(digest, data, opts);
    throwIfAborted(opts.signal);
    const bytes = data instanceof Uint8Array ? data : await collect(digest, data, opts.signal);
    throwIfAborted(opts.signal);
    if (bytes.length !== digest.sizeBytes) {
      throw StatusError.invalidArgument(`Failed to store blob: client declared ${digest.toString()}, sent ${bytes.length} bytes`, [
        { field: 'digest.size_bytes', description: `Blob has ${bytes.length} bytes, not the declared ${digest.sizeBytes}` },
      ]);
    }
    if (digest.isEmpty) return;
    if (this.closed) throw closing(digest);
    const present = this.index.peek(digest);
    if (present) {
      // Concurrent or repeated uploads of one blob: the first append wins, the others only refresh it.
      present.usedIn = this.activePack.seq;
      return;
    }
    this.append(digest, bytes);
    this.evictBeyondBounds();
  }

  async findMissing(digests: readonly Digest[], opts: CallOptions = {}): Promise<Digest[]> {
    throwIfAborted(opts.signal);
    if (this.closed) throw StatusError.unavailable('Failed to find missing blobs: the packed store is closing');
    const large = digests.filter((d) => !this.isSmall(d));
    // Large digests are usually few: their keys are built only for them.
    const largeMissing = new Set(large.length > 0 ? (await this.backend.findMissing(large, opts)).map((d) => d.key) : []);
    const seq = this.activePack.seq;
    const missing: Digest[] = [];
    const seen = new DigestSet();
    for (const d of digests) {
      if (d.isEmpty) continue;
      let absent: boolean;
      if (this.isSmall(d)) {
        const entry = this.index.peek(d);
        if (entry) entry.usedIn = seq;
        absent = entry === undefined;
      } else {
        absent = largeMissing.has(d.key);
      }
      if (absent && seen.add(d)) missing.push(d);
    }
    return missing;
  }

  private isSmall(digest: Digest): boolean {
    return digest.sizeBytes <= this.maxBlobSizeBytes;
  }

  private get activePack(): Pack {
    return this.packs[this.packs.length - 1]!;
  }

  /** The payload of `digest`'s record, hashed against the digest; NOT_FOUND when absent or wrong. */
  private async readVerified(digest: Digest): Promise<Uint8Array> {
    if (this.closed) throw closing(digest);
    const entry = this.index.peek(digest);
    if (!entry) {
      if (digest.isEmpty) return new Uint8Array(0);
      throw notFound(digest);
    }
    entry.usedIn = this.activePack.seq;
    const { pack } = entry;
    const payload = Buffer.allocUnsafe(digest.sizeBytes);
    pack.refs++;
    let bytesRead: number;
    try {
      ({ bytesRead } = await readAt(pack.fd, payload, 0, payload.length, entry.offset + entry.headerBytes));
    } catch (err) {
      throw packError(err, `Failed to read blob ${digest.toString()}`);
    } finally {
      this.release(pack);
    }
    const hasher = newHasher(digest.digestFunction);
    hasher.update(payload.subarray(0, bytesRead));
    if (bytesRead !== payload.length || hasher.digest('hex') !== digest.hash) {
      this.logger.warn('Packed blob does not match its digest; dropping it', { digest: digest.toString(), pack: path.basename(pack.file), offset: entry.offset });
      if (this.index.peek(digest) === entry) this.index.delete(digest);
      throw notFound(digest);
    }
    return payload;
  }

  /** Appends a record to the newest pack (starting a new pack when it is full) and indexes it. */
  private append(digest: Digest, payload: Uint8Array): void {
    const record = encodeRecord(digest, payload);
    const active = this.activePack;
    try {
      // Full by bytes, or by records: a pack holds at most an eighth of the index bound, so dropping packs can always meet it.
      if (active.sizeBytes > 0 && (active.sizeBytes + record.length > this.packSizeBytes || active.digests.length >= this.maxRecordsPerPack)) this.startPack();
      const pack = this.activePack;
      // A small record written synchronously: one system call, no round trip through the thread pool.
      // A partial write (disk full) is overwritten by the next append at the same offset, or truncated at open.
      fs.writeSync(pack.fd, record, 0, record.length, pack.sizeBytes);
      if (this.fsync) fs.fdatasyncSync(pack.fd);
    } catch (err) {
      throw packError(err, `Failed to store blob ${digest.toString()}`);
    }
    const pack = this.activePack;
    this.index.set(digest, { pack, offset: pack.sizeBytes, headerBytes: record.length - payload.length, usedIn: pack.seq });
    pack.digests.push(digest);
    pack.sizeBytes += record.length;
    this.totalBytes += record.length;
  }

  private startPack(): void {
    const seq = this.packs.length > 0 ? this.activePack.seq + 1 : 1;
    const file = path.join(this.dir, `${String(seq).padStart(12, '0')}.pack`);
    const fd = fs.openSync(file, 'wx+');
    this.packs.push({ seq, file, fd, sizeBytes: 0, digests: [], refs: 0, dropped: false });
  }

  /** Drops oldest packs while over a bound, copying their hot records forward (see module comment). */
  private evictBeyondBounds(): void {
    while ((this.totalBytes > this.maxSizeBytes || this.index.size > this.maxIndexEntries) && this.packs.length > 1) {
      const pack = this.packs.shift()!;
      // Hot: used since the newer half of the packs began. Most recently used first, up to half the pack.
      const hotSince = this.packs[Math.floor(this.packs.length / 2)]!.seq;
      const hot: [Digest, Entry][] = [];
      for (const digest of pack.digests) {
        const entry = this.index.peek(digest);
        if (entry?.pack !== pack) continue;
        if (entry.usedIn >= hotSince) hot.push([digest, entry]);
        else {
          this.index.delete(digest);
          this.evicted++;
        }
      }
      hot.sort((a, b) => b[1].usedIn - a[1].usedIn);
      let budget = Math.floor(pack.sizeBytes / 2);
      const carried: Digest[] = [];
      for (const [digest, entry] of hot) {
        const bytes = entry.headerBytes + digest.sizeBytes;
        if (bytes <= budget) {
          budget -= bytes;
          carried.push(digest);
        } else {
          this.index.delete(digest);
          this.evicted++;
        }
      }
      pack.digests = [];
      pack.dropped = true;
      this.totalBytes -= pack.sizeBytes;
      // Unlinked now; the descriptor keeps it readable for reads in flight and the copies below.
      fs.rmSync(pack.file, { force: true });
      pack.refs++;
      this.compaction = this.compaction
        .then(() => this.copyForward(pack, carried))
        .catch((err: unknown) => this.logger.warn('Failed to copy packed blobs forward', { error: (err as Error).message }))
        .finally(() => this.release(pack));
    }
  }

  /** Re-appends the records of a dropped pack that are still indexed there, verified on the way. */
  private async copyForward(pack: Pack, digests: readonly Digest[]): Promise<void> {
    for (const digest of digests) {
      if (this.index.peek(digest)?.pack !== pack) continue;
      let payload: Uint8Array;
      try {
        payload = await this.readVerified(digest);
      } catch {
        continue; // dropped by readVerified, or unreadable: it is missing now
      }
      // Checked again after the read: an upload of the same blob may have re-appended it meanwhile.
      if (this.closed) {
        if (this.index.peek(digest)?.pack === pack) this.index.delete(digest);
        continue;
      }
      if (this.index.peek(digest)?.pack !== pack) continue;
      try {
        this.append(digest, payload);
      } catch (err) {
        this.index.delete(digest);
        this.logger.warn('Failed to copy a packed blob forward; it is missing now', { digest: digest.toString(), error: (err as Error).message });
      }
    }
    if (!this.closed) this.evictBeyondBounds();
  }

  private release(pack: Pack): void {
    if (--pack.refs === 0 && pack.dropped) fs.close(pack.fd, () => {});
  }

  /** Reads every pack, truncating torn tails, and indexes their records (a later record of a digest wins). */
  private async loadPacks(): Promise<void> {
    const names = (await fsp.readdir(this.dir)).filter((n) => PACK_NAME.test(n)).sort();
    for (const name of names) {
      const file = path.join(this.dir, name);
      const fd = fs.openSync(file, 'r+');
      let kept = false;
      try {
        const { size } = fs.fstatSync(fd);
        // Not this store's threshold: records written under a larger one are still whole records (never read here).
        const scan = await scanPack(fd, size, MAX_PACKED_BLOB_BYTES);
        if (scan.validBytes < size) {
          this.logger.warn('Truncating a torn pack tail', { pack: name, validBytes: scan.validBytes, droppedBytes: size - scan.validBytes });
          fs.ftruncateSync(fd, scan.validBytes);
        }
        if (scan.corruptRecords > 0) this.logger.warn('Skipped pack records whose checksum does not match', { pack: name, records: scan.corruptRecords });
        if (scan.validBytes === 0) {
          fs.rmSync(file, { force: true });
          continue;
        }
        const pack: Pack = { seq: Number(PACK_NAME.exec(name)![1]), file, fd, sizeBytes: scan.validBytes, digests: [], refs: 0, dropped: false };
        this.packs.push(pack);
        kept = true;
        for (const r of scan.records) {
          this.index.set(r.digest, { pack, offset: r.offset, headerBytes: r.headerBytes, usedIn: pack.seq });
          pack.digests.push(r.digest);
        }
        this.totalBytes += pack.sizeBytes;
      } finally {
        if (!kept) fs.closeSync(fd);
      }
    }
    if (this.packs.length > 0) this.evictBeyondBounds();
  }

  private closeAll(): void {
    for (const pack of this.packs.splice(0)) {
      pack.dropped = true;
      if (pack.refs === 0) fs.close(pack.fd, () => {});
    }
  }
}

/** A streamed small blob, collected (it is at most the pack threshold, so memory stays bounded). */
async function collect(digest: Digest, data: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const out = Buffer.allocUnsafe(digest.sizeBytes);
  let received = 0;
  for await (const chunk of abortable(toChunks(data), signal)) {
    if (received + chunk.length > digest.sizeBytes) {
      throw StatusError.invalidArgument(`Failed to store blob: client declared ${digest.toString()}, sent at least ${received + chunk.length} bytes`, [
        { field: 'digest.size_bytes', description: `Blob has more than the declared ${digest.sizeBytes} bytes` },
      ]);
    }
    out.set(chunk, received);
    received += chunk.length;
  }
  return out.subarray(0, received);
}

function closing(digest: Digest): StatusError {
  return StatusError.unavailable(`Failed to access blob ${digest.toString()}: the packed store is closing`);
}

/** A full disk is RESOURCE_EXHAUSTED, anything else INTERNAL; the text names the error code, never a path. */
function packError(err: unknown, step: string): StatusError {
  const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
  if (code === 'ENOSPC' || code === 'EDQUOT') return StatusError.resourceExhausted(`${step}: no space left on device (${code})`);
  return StatusError.internal(`${step}: pack file error (${code})`, err);
}

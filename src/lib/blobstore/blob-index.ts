/**
 * FilesystemBlobStore's index: digest -> stored size, in recency order, with the bytes and blobs
 * this process owns accounted. In a directory shared by several processes (shared-blob-directory.ts)
 * it also remembers blobs another process wrote ("foreign"): they answer lookups but are neither
 * counted nor evicted here. A foreign entry is stored as -(size + 1), so that the index keeps one
 * number per blob.
 */
import type { Digest } from '../digest/digest.js';
import { LruIndex, digestKeyScheme } from './lru-index.js';

const foreignValue = (sizeBytes: number) => -(sizeBytes + 1);
const sizeOfValue = (value: number) => (value < 0 ? -value - 1 : value);

export class BlobIndex {
  private readonly lru = new LruIndex<number, Digest>(digestKeyScheme);
  private bytes = 0;
  private blobs = 0;

  /** Bytes of the blobs this process owns. */
  get ownedBytes(): number {
    return this.bytes;
  }

  /** Number of blobs this process owns. */
  get ownedCount(): number {
    return this.blobs;
  }

  /** The stored size of `digest` (owned or foreign), marking it most recently used. */
  touch(digest: Digest): number | undefined {
    const value = this.lru.touch(digest);
    return value === undefined ? undefined : sizeOfValue(value);
  }

  /** Whether this process owns `digest`, marking it most recently used if indexed. */
  touchOwned(digest: Digest): boolean {
    const value = this.lru.touch(digest);
    return value !== undefined && value >= 0;
  }

  /** The stored size of `digest` without changing its recency. */
  peek(digest: Digest): number | undefined {
    const value = this.lru.peek(digest);
    return value === undefined ? undefined : sizeOfValue(value);
  }

  has(digest: Digest): boolean {
    return this.lru.has(digest);
  }

  isOwned(digest: Digest): boolean {
    const value = this.lru.peek(digest);
    return value !== undefined && value >= 0;
  }

  /** Records `digest` as this process's blob of `sizeBytes`, most recently used. */
  own(digest: Digest, sizeBytes: number): void {
    const previous = this.lru.set(digest, sizeBytes);
    if (previous !== undefined && previous >= 0) this.bytes -= previous;
    else this.blobs++;
    this.bytes += sizeBytes;
  }

  /** Records `digest` as another process's blob (replacing an entry of this process's, if any). */
  addForeign(digest: Digest, sizeBytes: number): void {
    const previous = this.lru.set(digest, foreignValue(sizeBytes));
    if (previous !== undefined && previous >= 0) this.uncount(previous);
  }

  /** A new size for an indexed entry, keeping who owns it; returns it. */
  resize(digest: Digest, sizeBytes: number): number {
    if (this.isOwned(digest)) this.own(digest, sizeBytes);
    else this.addForeign(digest, sizeBytes);
    return sizeBytes;
  }

  /** Removes `digest`; returns its size if this process owned it. */
  forget(digest: Digest): number | undefined {
    const value = this.lru.delete(digest);
    if (value === undefined || value < 0) return undefined;
    this.uncount(value);
    return value;
  }

  /** Entries from least to most recently used, as [digest, size, foreign]. Deleting the current entry is safe. */
  *oldestFirst(): Generator<[Digest, number, boolean]> {
    for (const [digest, value] of this.lru.oldestFirst()) yield [digest, sizeOfValue(value), value < 0];
  }

  private uncount(sizeBytes: number): void {
    this.bytes -= sizeBytes;
    this.blobs--;
  }
}

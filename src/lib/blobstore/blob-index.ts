/**
 * FilesystemBlobStore's index: digest -> stored size, in recency order, with the bytes and blobs
 * this process owns accounted. In a directory shared by several processes (shared-blob-directory.ts)
 * it also remembers blobs another process wrote ("foreign"): they answer lookups but are neither
 * counted nor evicted here.
 *
 * Why not JavaScript objects (a Map of linked nodes, as lru-index.ts): an index of 1M blobs held
 * about 480 bytes and four heap objects per blob (node, Digest, hash string, Map slot), so a 1M-blob
 * store idled at 500 MB, and answering FindMissingBlobs of 10k digests spent ~2 us per lookup on
 * cache misses through those objects (21 of the 28 ms the server spent per call, profiled). Here
 * every blob is one 64-byte record (one cache line) in a typed array, holding the hash's first 32
 * bytes, the size, the namespace, the stored size and the recency and chain links; the collector
 * never visits any of it. Lookups probe a table of chain heads, then the records.
 *
 * A record's key is (namespace, hash, size); a namespace is a digest function and instance name,
 * numbered in the order they are met (`namespaces`). Hashes longer than 32 bytes (SHA-384, SHA-512)
 * keep the rest of their hex in `tails`. Chains are filed by a mix of the key keyed per process, so
 * which records share a chain cannot be predicted or chosen from outside (MD5 and SHA-1 hashes can be
 * ground to collide in a few bits).
 */
import { randomBytes } from 'node:crypto';
import { Digest } from '../digest/digest.js';
import { type DigestFunction, hexLength } from '../digest/digest-function.js';

/** Int32 words per record. */
const RECORD = 16;
/** Words of a record holding the hash: its first 32 bytes (64 hex digits). */
const HASH_WORDS = 8;
/** Hash words that choose a record's chain (every supported hash has at least 4). */
const MIXED_WORDS = 2;
// Word offsets within a record after the hash. Links hold record id + 1; 0 is "none".
const SIZE_LO = 8;
const SIZE_HI = 9;
const NAMESPACE = 10;
/** Next record of the same chain, or of the free list. */
const NEXT = 11;
/** Towards the least recently used end. */
const OLDER = 12;
/** Towards the most recently used end. */
const NEWER = 13;
const STORED_LO = 14;
/** Stored size's high bits; FOREIGN is set for another process's blob. */
const STORED_HI = 15;
const FOREIGN = 1 << 30;
const TWO_32 = 0x1_0000_0000;
const INITIAL_RECORDS = 1024;

const MIX_KEYS = randomBytes(8);
const MIX_SEED = MIX_KEYS.readUInt32LE(0);
const MIX_SIZE_KEY = MIX_KEYS.readUInt32LE(4);

interface Namespace {
  digestFunction: DigestFunction;
  instanceName: string;
  /** Words of the record's hash area in use: hex digits / 8, at most HASH_WORDS. */
  words: number;
}

/** Nibble values of the lowercase hex digits, by character code. */
const NIBBLE = new Int32Array(128);
for (let c = 0; c < 10; c++) NIBBLE[0x30 + c] = c;
for (let c = 0; c < 6; c++) NIBBLE[0x61 + c] = 10 + c;

/**
 * Hex digits `start`..`start + 7` of `hex` (lowercase, validated by Digest) as an int32. Unrolled
 * through a table: a loop with a branch per digit cost 2.5 x as much (0.5 us per 64-digit hash).
 */
function hexWord(hex: string, start: number): number {
  return (
    (NIBBLE[hex.charCodeAt(start)]! << 28) |
    (NIBBLE[hex.charCodeAt(start + 1)]! << 24) |
    (NIBBLE[hex.charCodeAt(start + 2)]! << 20) |
    (NIBBLE[hex.charCodeAt(start + 3)]! << 16) |
    (NIBBLE[hex.charCodeAt(start + 4)]! << 12) |
    (NIBBLE[hex.charCodeAt(start + 5)]! << 8) |
    (NIBBLE[hex.charCodeAt(start + 6)]! << 4) |
    NIBBLE[hex.charCodeAt(start + 7)]!
  );
}

function wordHex(w: number): string {
  return (w >>> 0).toString(16).padStart(8, '0');
}

export class BlobIndex {
  private records = new Int32Array(INITIAL_RECORDS * RECORD);
  /** Chain heads by mixed key (record id + 1); its length, a power of two, is at least the record count. */
  private heads = new Int32Array(INITIAL_RECORDS);
  /** Record ids handed out so far (ids below are live or on the free list). */
  private used = 0;
  /** First free record id + 1. */
  private free = 0;
  private count = 0;
  private oldest = 0;
  private newest = 0;
  private readonly namespaces: Namespace[] = [];
  private readonly namespaceIds = new Map<string, number>();
  /** Hex beyond the first 64 digits, by record id, for hashes longer than 32 bytes. */
  private readonly tails = new Map<number, string>();
  /** The namespace of the last lookup (a request's digests share one): function, instance, id. */
  private lastFunction: DigestFunction | undefined;
  private lastInstance = '';
  private lastNamespace = -1;
  /** The first hash words of the digest being looked up. */
  private readonly scratch = new Int32Array(MIXED_WORDS);
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

  /** Number of indexed blobs, owned or foreign. */
  get size(): number {
    return this.count;
  }

  /** The stored size of `digest` (owned or foreign), marking it most recently used. */
  touch(digest: Digest): number | undefined {
    const id = this.find(digest);
    if (id < 0) return undefined;
    this.makeNewest(id);
    return this.storedSize(id);
  }

  /** Whether this process owns `digest`, marking it most recently used if indexed. */
  touchOwned(digest: Digest): boolean {
    const id = this.find(digest);
    if (id < 0) return false;
    this.makeNewest(id);
    return !this.isForeign(id);
  }

  /** The stored size of `digest` without changing its recency. */
  peek(digest: Digest): number | undefined {
    const id = this.find(digest);
    return id < 0 ? undefined : this.storedSize(id);
  }

  has(digest: Digest): boolean {
    return this.find(digest) >= 0;
  }

  isOwned(digest: Digest): boolean {
    const id = this.find(digest);
    return id >= 0 && !this.isForeign(id);
  }

  /** Records `digest` as this process's blob of `sizeBytes`, most recently used. */
  own(digest: Digest, sizeBytes: number): void {
    const id = this.upsert(digest);
    if (id.existed && !this.isForeign(id.id)) this.bytes -= this.storedSize(id.id);
    else this.blobs++;
    this.bytes += sizeBytes;
    this.setStored(id.id, sizeBytes, false);
  }

  /** Records `digest` as another process's blob (replacing an entry of this process's, if any). */
  addForeign(digest: Digest, sizeBytes: number): void {
    const id = this.upsert(digest);
    if (id.existed && !this.isForeign(id.id)) this.uncount(this.storedSize(id.id));
    this.setStored(id.id, sizeBytes, true);
  }

  /** A new size for an indexed entry, keeping who owns it; returns it. */
  resize(digest: Digest, sizeBytes: number): number {
    if (this.isOwned(digest)) this.own(digest, sizeBytes);
    else this.addForeign(digest, sizeBytes);
    return sizeBytes;
  }

  /** Removes `digest`; returns its size if this process owned it. */
  forget(digest: Digest): number | undefined {
    const id = this.find(digest);
    if (id < 0) return undefined;
    const foreign = this.isForeign(id);
    const sizeBytes = this.storedSize(id);
    this.remove(id);
    if (foreign) return undefined;
    this.uncount(sizeBytes);
    return sizeBytes;
  }

  /** Entries from least to most recently used, as [digest, size, foreign]. Deleting the current entry is safe. */
  *oldestFirst(): Generator<[Digest, number, boolean]> {
    for (let link = this.oldest; link !== 0; ) {
      const id = link - 1;
      const next = this.records[id * RECORD + NEWER]!;
      yield [this.digestOf(id), this.storedSize(id), this.isForeign(id)];
      link = next;
    }
  }

  private uncount(sizeBytes: number): void {
    this.bytes -= sizeBytes;
    this.blobs--;
  }

  private storedSize(id: number): number {
    const r = this.records;
    const base = id * RECORD;
    return (r[base + STORED_HI]! & ~FOREIGN) * TWO_32 + (r[base + STORED_LO]! >>> 0);
  }

  private isForeign(id: number): boolean {
    return (this.records[id * RECORD + STORED_HI]! & FOREIGN) !== 0;
  }

  private setStored(id: number, sizeBytes: number, foreign: boolean): void {
    const base = id * RECORD;
    this.records[base + STORED_LO] = sizeBytes | 0;
    this.records[base + STORED_HI] = Math.floor(sizeBytes / TWO_32) | (foreign ? FOREIGN : 0);
  }

  /** The namespace id of `digest`'s function and instance name, or -1 if none is indexed (and `create` is false). */
  private namespaceOf(digest: Digest, create: boolean): number {
    if (digest.digestFunction === this.lastFunction && digest.instanceName === this.lastInstance) return this.lastNamespace;
    const name = `${digest.digestFunction}\u0000${digest.instanceName}`;
    let id = this.namespaceIds.get(name);
    if (id === undefined) {
      if (!create) return -1;
      id = this.namespaces.length;
      this.namespaces.push({ digestFunction: digest.digestFunction, instanceName: digest.instanceName, words: Math.min(HASH_WORDS, hexLength(digest.digestFunction) / 8) });
      this.namespaceIds.set(name, id);
    }
    this.lastFunction = digest.digestFunction;
    this.lastInstance = digest.instanceName;
    this.lastNamespace = id;
    return id;
  }

  /**
   * Loads the first MIXED_WORDS hash words of `digest` into `scratch`; returns the mixed key of
   * (namespace, those words, size). The rest of the hash is compared only against a record that
   * matches that far: an absent digest, half of a typical FindMissingBlobs, is not parsed further.
   */
  private loadKey(digest: Digest, namespace: number): number {
    const hex = digest.hash;
    const scratch = this.scratch;
    scratch[0] = hexWord(hex, 0);
    scratch[1] = hexWord(hex, 8);
    return this.mix(scratch, 0, namespace, digest.sizeBytes | 0, Math.floor(digest.sizeBytes / TWO_32));
  }

  /**
   * A keyed mix of a hash's first MIXED_WORDS words (from `words[offset]`), the namespace and the
   * size's halves. 64 bits of a hash spread records as well as all of it; the key keeps the spread
   * from being steered.
   */
  private mix(words: Int32Array, offset: number, namespace: number, sizeLo: number, sizeHi: number): number {
    let h = Math.imul(MIX_SEED ^ namespace ^ words[offset]!, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15) ^ words[offset + 1]!, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15) ^ sizeLo ^ MIX_SIZE_KEY, 0x85ebca6b);
    h = Math.imul(h ^ sizeHi ^ (h >>> 13), 0xc2b2ae35);
    return h ^ (h >>> 16);
  }

  /** The record id of `digest`, or -1. */
  private find(digest: Digest): number {
    const namespace = this.namespaceOf(digest, false);
    if (namespace < 0) return -1;
    return this.findIn(digest, namespace, this.loadKey(digest, namespace) & (this.heads.length - 1));
  }

  /** The record id of `digest` in chain `chain` (its first words loaded in `scratch`), or -1. */
  private findIn(digest: Digest, namespace: number, chain: number): number {
    const r = this.records;
    const w0 = this.scratch[0]!;
    const w1 = this.scratch[1]!;
    const hex = digest.hash;
    const words = this.namespaces[namespace]!.words;
    const sizeLo = digest.sizeBytes | 0;
    const sizeHi = Math.floor(digest.sizeBytes / TWO_32);
    next: for (let link = this.heads[chain]!; link !== 0; link = r[(link - 1) * RECORD + NEXT]!) {
      const base = (link - 1) * RECORD;
      if (r[base] !== w0 || r[base + 1] !== w1 || r[base + SIZE_LO] !== sizeLo || r[base + SIZE_HI] !== sizeHi || r[base + NAMESPACE] !== namespace) continue;
      for (let k = MIXED_WORDS; k < words; k++) if (r[base + k] !== hexWord(hex, k * 8)) continue next;
      if (hex.length > HASH_WORDS * 8 && this.tails.get(link - 1) !== hex.slice(HASH_WORDS * 8)) continue;
      return link - 1;
    }
    return -1;
  }

  /** The chain a record is filed in. */
  private chainOf(id: number): number {
    const r = this.records;
    const base = id * RECORD;
    const namespace = r[base + NAMESPACE]!;
    return this.mix(r, base, namespace, r[base + SIZE_LO]!, r[base + SIZE_HI]!) & (this.heads.length - 1);
  }

  /** The record of `digest`, made most recently used, added if absent. */
  private upsert(digest: Digest): { id: number; existed: boolean } {
    const namespace = this.namespaceOf(digest, true);
    const key = this.loadKey(digest, namespace);
    const found = this.findIn(digest, namespace, key & (this.heads.length - 1));
    if (found >= 0) {
      this.makeNewest(found);
      return { id: found, existed: true };
    }
    if (this.count + 1 > this.heads.length) this.rehash(this.heads.length * 2);
    const chain = key & (this.heads.length - 1);
    const id = this.allocate();
    const r = this.records;
    const base = id * RECORD;
    for (let k = 0; k < this.namespaces[namespace]!.words; k++) r[base + k] = hexWord(digest.hash, k * 8);
    r[base + SIZE_LO] = digest.sizeBytes | 0;
    r[base + SIZE_HI] = Math.floor(digest.sizeBytes / TWO_32);
    r[base + NAMESPACE] = namespace;
    r[base + NEXT] = this.heads[chain]!;
    this.heads[chain] = id + 1;
    if (digest.hash.length > HASH_WORDS * 8) this.tails.set(id, digest.hash.slice(HASH_WORDS * 8));
    this.count++;
    this.link(id);
    return { id, existed: false };
  }

  private allocate(): number {
    if (this.free !== 0) {
      const id = this.free - 1;
      this.free = this.records[id * RECORD + NEXT]!;
      return id;
    }
    if (this.used * RECORD === this.records.length) {
      const grown = new Int32Array(this.records.length * 2);
      grown.set(this.records);
      this.records = grown;
    }
    return this.used++;
  }

  /** Unfiles record `id` from its chain and the recency list, and frees it. */
  private remove(id: number): void {
    const chain = this.chainOf(id);
    const r = this.records;
    const base = id * RECORD;
    if (this.heads[chain] === id + 1) {
      this.heads[chain] = r[base + NEXT]!;
    } else {
      let link = this.heads[chain]!;
      while (r[(link - 1) * RECORD + NEXT] !== id + 1) link = r[(link - 1) * RECORD + NEXT]!;
      r[(link - 1) * RECORD + NEXT] = r[base + NEXT]!;
    }
    this.unlink(id);
    this.tails.delete(id);
    r.fill(0, base, base + RECORD);
    r[base + NEXT] = this.free;
    this.free = id + 1;
    this.count--;
  }

  /** Refiles every record in a table of `size` chains. */
  private rehash(size: number): void {
    this.heads = new Int32Array(size);
    const r = this.records;
    for (let link = this.oldest; link !== 0; link = r[(link - 1) * RECORD + NEWER]!) {
      const id = link - 1;
      const chain = this.chainOf(id);
      r[id * RECORD + NEXT] = this.heads[chain]!;
      this.heads[chain] = link;
    }
  }

  private makeNewest(id: number): void {
    if (this.newest === id + 1) return;
    this.unlink(id);
    this.link(id);
  }

  private unlink(id: number): void {
    const r = this.records;
    const base = id * RECORD;
    const older = r[base + OLDER]!;
    const newer = r[base + NEWER]!;
    if (older !== 0) r[(older - 1) * RECORD + NEWER] = newer;
    else this.oldest = newer;
    if (newer !== 0) r[(newer - 1) * RECORD + OLDER] = older;
    else this.newest = older;
    r[base + OLDER] = r[base + NEWER] = 0;
  }

  /** Links record `id` as the most recently used. */
  private link(id: number): void {
    const r = this.records;
    r[id * RECORD + OLDER] = this.newest;
    if (this.newest !== 0) r[(this.newest - 1) * RECORD + NEWER] = id + 1;
    else this.oldest = id + 1;
    this.newest = id + 1;
  }

  private digestOf(id: number): Digest {
    const r = this.records;
    const base = id * RECORD;
    const namespace = this.namespaces[r[base + NAMESPACE]!]!;
    const parts: string[] = [];
    for (let k = 0; k < namespace.words; k++) parts.push(wordHex(r[base + k]!));
    const tail = this.tails.get(id);
    if (tail !== undefined) parts.push(tail);
    const hash = parts.join('');
    const sizeBytes = r[base + SIZE_HI]! * TWO_32 + (r[base + SIZE_LO]! >>> 0);
    return Digest.create(namespace.instanceName, namespace.digestFunction, hash, sizeBytes, 'digest', true);
  }
}

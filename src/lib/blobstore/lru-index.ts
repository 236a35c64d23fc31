/**
 * A map that remembers recency of use, for the least-recently-used eviction of local stores.
 *
 * Why not a plain JS Map re-inserted on every access: a delete + set leaves a tombstone, and with a
 * million entries V8 periodically rehashes the whole table, so one FindMissingBlobs of 10k digests
 * could stall for tens of milliseconds. Here an access only relinks a node of a doubly linked list;
 * the Map changes only when entries are added or removed.
 *
 * Keys need not be strings: a `KeyScheme` maps each key to a bucket (a Map key) and compares keys
 * within a bucket. Stores key blobs by `Digest` through `digestKeyScheme`, whose buckets are small
 * integers taken from the hash: looking up a digest then needs no key string built and hashed per
 * digest, which was most of the cost of answering FindMissingBlobs from the index.
 */
import type { Digest } from '../digest/digest.js';

/** How an index files its keys: `bucketOf` may map distinct keys to one bucket; `equals` tells them apart. */
export interface KeyScheme<K> {
  bucketOf(key: K): string | number;
  equals(a: K, b: K): boolean;
}

/** Strings are their own buckets. */
const stringKeyScheme: KeyScheme<string> = {
  bucketOf: (key) => key,
  equals: (a, b) => a === b,
};

/** Values of the characters '0'-'9' and 'a'-'f' (a Digest's hash is validated lowercase hex). */
const HEX_VALUE = new Uint8Array(128);
for (let i = 0; i < 16; i++) HEX_VALUE['0123456789abcdef'.charCodeAt(i)] = i;

/**
 * Digests filed by the first 7 hex digits of their hash (28 bits: a small integer, which V8 hashes
 * without touching any string). Hashes are uniformly distributed, so buckets hold one digest but
 * for rare collisions; digests that differ only in size, function or instance share a bucket.
 */
export const digestKeyScheme: KeyScheme<Digest> = {
  bucketOf(d) {
    const h = d.hash;
    let bucket = 0;
    for (let i = 0; i < 7; i++) bucket = (bucket << 4) | HEX_VALUE[h.charCodeAt(i) & 0x7f]!;
    return bucket;
  },
  equals(a, b) {
    return a === b || (a.hash === b.hash && a.sizeBytes === b.sizeBytes && a.digestFunction === b.digestFunction && a.instanceName === b.instanceName);
  },
};

interface Node<K, V> {
  key: K;
  value: V;
  /** Towards the least recently used end. */
  older: Node<K, V> | undefined;
  /** Towards the most recently used end. */
  newer: Node<K, V> | undefined;
  /** The next node of the same bucket. */
  sibling: Node<K, V> | undefined;
}

export class LruIndex<V, K = string> {
  /** Bucket -> first node of its chain. */
  private readonly buckets = new Map<string | number, Node<K, V>>();
  private count = 0;
  private oldest: Node<K, V> | undefined;
  private newest: Node<K, V> | undefined;
  private readonly scheme: KeyScheme<K>;

  constructor(...args: K extends string ? [scheme?: KeyScheme<K>] : [scheme: KeyScheme<K>]) {
    this.scheme = args[0] ?? (stringKeyScheme as unknown as KeyScheme<K>);
  }

  get size(): number {
    return this.count;
  }

  has(key: K): boolean {
    return this.find(key) !== undefined;
  }

  /** The value for `key` without changing its recency. */
  peek(key: K): V | undefined {
    return this.find(key)?.value;
  }

  /** The value for `key`, marking it most recently used. */
  touch(key: K): V | undefined {
    const node = this.find(key);
    if (!node) return undefined;
    if (node !== this.newest) {
      this.unlink(node);
      this.append(node);
    }
    return node.value;
  }

  /** Sets `key` to `value` as the most recently used entry; returns the value it replaced, if any. */
  set(key: K, value: V): V | undefined {
    const bucket = this.scheme.bucketOf(key);
    const first = this.buckets.get(bucket);
    for (let node = first; node; node = node.sibling) {
      if (this.scheme.equals(node.key, key)) {
        const previous = node.value;
        node.value = value;
        this.unlink(node);
        this.append(node);
        return previous;
      }
    }
    const fresh: Node<K, V> = { key, value, older: undefined, newer: undefined, sibling: first };
    this.buckets.set(bucket, fresh);
    this.count++;
    this.append(fresh);
    return undefined;
  }

  /** Removes `key`; returns its value, if it was present. */
  delete(key: K): V | undefined {
    const bucket = this.scheme.bucketOf(key);
    let previous: Node<K, V> | undefined;
    for (let node = this.buckets.get(bucket); node; previous = node, node = node.sibling) {
      if (!this.scheme.equals(node.key, key)) continue;
      if (previous) previous.sibling = node.sibling;
      else if (node.sibling) this.buckets.set(bucket, node.sibling);
      else this.buckets.delete(bucket);
      node.sibling = undefined;
      this.count--;
      this.unlink(node);
      return node.value;
    }
    return undefined;
  }

  /** Entries from least to most recently used. Deleting the current entry while iterating is safe. */
  *oldestFirst(): Generator<[K, V]> {
    for (let node = this.oldest; node; ) {
      const next = node.newer;
      yield [node.key, node.value];
      node = next;
    }
  }

  private find(key: K): Node<K, V> | undefined {
    let node = this.buckets.get(this.scheme.bucketOf(key));
    while (node && !this.scheme.equals(node.key, key)) node = node.sibling;
    return node;
  }

  private unlink(node: Node<K, V>): void {
    if (node.older) node.older.newer = node.newer;
    else this.oldest = node.newer;
    if (node.newer) node.newer.older = node.older;
    else this.newest = node.older;
    node.older = node.newer = undefined;
  }

  private append(node: Node<K, V>): void {
    node.older = this.newest;
    if (this.newest) this.newest.newer = node;
    else this.oldest = node;
    this.newest = node;
  }
}

/**
 * A set of digests filed like `LruIndex` files them under `digestKeyScheme`, for deduplicating
 * thousands of digests per request without building a key string for each.
 */
export class DigestSet {
  private readonly buckets = new Map<number, Digest | Digest[]>();

  /** Adds `digest`; false if an equal digest was already in the set. */
  add(digest: Digest): boolean {
    const bucket = digestKeyScheme.bucketOf(digest) as number;
    const entry = this.buckets.get(bucket);
    if (entry === undefined) {
      this.buckets.set(bucket, digest);
      return true;
    }
    if (Array.isArray(entry)) {
      if (entry.some((d) => digestKeyScheme.equals(d, digest))) return false;
      entry.push(digest);
      return true;
    }
    if (digestKeyScheme.equals(entry, digest)) return false;
    this.buckets.set(bucket, [entry, digest]);
    return true;
  }
}

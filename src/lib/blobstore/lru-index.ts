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
 * integers mixed from the digest with per-process random keys: looking up a digest then needs no key string built and hashed per
 * digest, which was most of the cost of answering FindMissingBlobs from the index.
 */
import { type Digest, digestBucket, sameDigest } from '../digest/digest.js';

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

/**
 * Digests filed by `digestBucket` (a keyed mix computed once per Digest: a small integer, which V8
 * hashes without touching any string) and compared by value.
 */
export const digestKeyScheme: KeyScheme<Digest> = { bucketOf: digestBucket, equals: sameDigest };

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

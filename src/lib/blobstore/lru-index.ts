/**
 * A map that remembers recency of use, for the least-recently-used eviction of local stores.
 *
 * Why not a plain JS Map re-inserted on every access: a delete + set leaves a tombstone, and with a
 * million entries V8 periodically rehashes the whole table, so one FindMissingBlobs of 10k digests
 * could stall for tens of milliseconds. Here an access only relinks a node of a doubly linked list;
 * the Map changes only when entries are added or removed.
 */
interface Node<V> {
  key: string;
  value: V;
  /** Towards the least recently used end. */
  older: Node<V> | undefined;
  /** Towards the most recently used end. */
  newer: Node<V> | undefined;
}

export class LruIndex<V> {
  private readonly nodes = new Map<string, Node<V>>();
  private oldest: Node<V> | undefined;
  private newest: Node<V> | undefined;

  get size(): number {
    return this.nodes.size;
  }

  has(key: string): boolean {
    return this.nodes.has(key);
  }

  /** The value for `key` without changing its recency. */
  peek(key: string): V | undefined {
    return this.nodes.get(key)?.value;
  }

  /** The value for `key`, marking it most recently used. */
  touch(key: string): V | undefined {
    const node = this.nodes.get(key);
    if (!node) return undefined;
    if (node !== this.newest) {
      this.unlink(node);
      this.append(node);
    }
    return node.value;
  }

  /** Sets `key` to `value` as the most recently used entry; returns the value it replaced, if any. */
  set(key: string, value: V): V | undefined {
    const node = this.nodes.get(key);
    if (node) {
      const previous = node.value;
      node.value = value;
      this.unlink(node);
      this.append(node);
      return previous;
    }
    const fresh: Node<V> = { key, value, older: undefined, newer: undefined };
    this.nodes.set(key, fresh);
    this.append(fresh);
    return undefined;
  }

  /** Removes `key`; returns its value, if it was present. */
  delete(key: string): V | undefined {
    const node = this.nodes.get(key);
    if (!node) return undefined;
    this.nodes.delete(key);
    this.unlink(node);
    return node.value;
  }

  /** Entries from least to most recently used. Deleting the current entry while iterating is safe. */
  *oldestFirst(): Generator<[string, V]> {
    for (let node = this.oldest; node; ) {
      const next = node.newer;
      yield [node.key, node.value];
      node = next;
    }
  }

  private unlink(node: Node<V>): void {
    if (node.older) node.older.newer = node.newer;
    else this.oldest = node.newer;
    if (node.newer) node.newer.older = node.older;
    else this.newest = node.older;
    node.older = node.newer = undefined;
  }

  private append(node: Node<V>): void {
    node.older = this.newest;
    if (this.newest) this.newest.newer = node;
    else this.oldest = node;
    this.newest = node;
  }
}

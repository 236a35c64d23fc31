/**
 * The queue of executions waiting for a worker: ordered by priority (lower first), then by arrival
 * (`seq`), and claimed by platform: a worker takes the first executions whose required platform
 * properties its own satisfy, skipping the ones it cannot run.
 *
 * ## For a backend author (SQLite, Redis; see issue 12)
 * Methods return `MaybePromise`: the in-memory queue answers at once, a durable one after I/O.
 * - Order is exactly (priority ascending, seq ascending); `seq` is kept on requeue, so a retried
 *   execution goes back to its old place. An index on (platform key, priority, seq) serves `claim`.
 * - `claim` must be atomic: with several schedulers on one store, two claims never return the same
 *   execution (a Lua script or MULTI in Redis, one transaction in SQLite). What it returns is gone
 *   from the queue; the coordinator puts back with `push` what it could not hand out.
 * - `claim` matching is `workerPlatform.satisfies(item.platform)`; compare by `PlatformProperties.key`
 *   (canonical) so that a backend can group waiting executions by required platform.
 * InMemoryBuildQueue binds to InMemoryExecutionQueue's synchronous signatures; see operation-table.ts
 * for what a coordinator over a durable queue must do instead, and for how the SQLite state journals
 * this room rather than replacing it.
 */
import type { MaybePromise } from '../util/maybe-promise.js';
import type { PlatformProperties } from './platform-properties.js';

/** What the queue needs to know of a waiting execution. */
export interface QueueItem {
  readonly priority: number;
  readonly seq: number;
  readonly platform: PlatformProperties;
}

export interface ExecutionQueue<T extends QueueItem> {
  /** Executions waiting. */
  readonly size: number;
  /** Adds an execution at its (priority, seq) place. */
  push(item: T): MaybePromise<void>;
  /** Removes an execution (a cancellation or a platform timeout); false if it was not queued. */
  remove(item: T): MaybePromise<boolean>;
  /** Removes and returns, in order, up to `max` executions that `workerPlatform` satisfies. */
  claim(workerPlatform: PlatformProperties, max: number): MaybePromise<T[]>;
  /** Every waiting execution in order (the sweeper's scan). */
  values(): MaybePromise<Iterable<T>>;
}

/** A sorted array: binary-search insert, linear claim that skips unsuitable platforms. */
export class InMemoryExecutionQueue<T extends QueueItem> implements ExecutionQueue<T> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  push(item: T): void {
    // Binary search for the first element that sorts after `item`.
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const other = this.items[mid]!;
      if (other.priority < item.priority || (other.priority === item.priority && other.seq < item.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.items.splice(lo, 0, item);
  }

  remove(item: T): boolean {
    const i = this.items.indexOf(item);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }

  claim(workerPlatform: PlatformProperties, max: number): T[] {
    const claimed: T[] = [];
    // Many waiting executions share a platform: decide each distinct one once.
    const fits = new Map<string, boolean>();
    for (let i = 0; i < this.items.length && claimed.length < max; ) {
      const item = this.items[i]!;
      let ok = fits.get(item.platform.key);
      if (ok === undefined) fits.set(item.platform.key, (ok = workerPlatform.satisfies(item.platform)));
      if (!ok) {
        i++;
        continue;
      }
      this.items.splice(i, 1);
      claimed.push(item);
    }
    return claimed;
  }

  values(): Iterable<T> {
    return [...this.items];
  }
}

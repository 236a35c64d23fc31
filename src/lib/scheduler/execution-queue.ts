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
  /** Whose queue limits it counts against. */
  readonly actionDigest: { readonly instanceName: string };
  /** What it counts against its instance's queued-bytes limit. */
  readonly queuedBytes: number;
}

/** What one instance has waiting. */
export interface QueueUsage {
  actions: number;
  bytes: number;
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

/**
 * A sorted array: binary-search insert, linear claim that skips unsuitable platforms. Every way in
 * (push) and out (remove, claim) keeps the per-instance usage, so limits see requeues and restores too.
 */
export class InMemoryExecutionQueue<T extends QueueItem> implements ExecutionQueue<T> {
  private readonly items: T[] = [];
  private readonly usageByInstance = new Map<string, QueueUsage>();

  get size(): number {
    return this.items.length;
  }

  /** What `instanceName` has waiting now. */
  usage(instanceName: string): QueueUsage {
    const usage = this.usageByInstance.get(instanceName);
    return usage ? { ...usage } : { actions: 0, bytes: 0 };
  }

  private count(item: T, sign: 1 | -1): void {
    const instanceName = item.actionDigest.instanceName;
    const usage = this.usageByInstance.get(instanceName) ?? { actions: 0, bytes: 0 };
    usage.actions += sign;
    usage.bytes += sign * item.queuedBytes;
    if (usage.actions <= 0) this.usageByInstance.delete(instanceName);
    else this.usageByInstance.set(instanceName, usage);
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
    this.count(item, 1);
  }

  remove(item: T): boolean {
    const i = this.items.indexOf(item);
    if (i < 0) return false;
    this.items.splice(i, 1);
    this.count(item, -1);
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
      this.count(item, -1);
      claimed.push(item);
    }
    return claimed;
  }

  values(): Iterable<T> {
    return [...this.items];
  }
}

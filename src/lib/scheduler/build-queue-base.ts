/**
 * What every BuildQueue backend holds the same way: its collaborators (the CAS it loads actions
 * from, the action cache it writes, the clock, logger and id source) with their defaults, the
 * resolved limits, and the signal that ends its loops on close.
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { ActionCache } from '../actioncache/action-cache.js';
import type { BlobStore } from '../blobstore/blob-store.js';
import { type Clock, systemClock } from '../util/clock.js';
import { type Logger, silentLogger } from '../util/logger.js';
import { type BuildQueueLimits, type InMemoryBuildQueueOptions, resolveLimits } from './build-queue-options.js';
import { shuttingDown } from './scheduler-state.js';

export abstract class BuildQueueBase {
  protected readonly cas: BlobStore;
  protected readonly actionCache: ActionCache;
  protected readonly clock: Clock;
  protected readonly logger: Logger;
  protected readonly newId: () => string;
  protected readonly limits: BuildQueueLimits;
  /** Aborted by close(): ends sweeps, held polls and followers. */
  protected readonly closing = new AbortController();

  protected constructor(opts: Omit<InMemoryBuildQueueOptions, 'state'>) {
    this.cas = opts.contentAddressableStorage;
    this.actionCache = opts.actionCache;
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger ?? silentLogger;
    this.newId = opts.newId ?? randomUUID;
    this.limits = resolveLimits(opts);
    setMaxListeners(0, this.closing.signal);
  }

  protected throwIfClosed(): void {
    if (this.closing.signal.aborted) throw shuttingDown();
  }
}

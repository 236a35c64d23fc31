/**
 * `scheduler.state` -> the build queue: the only way a scheduler builds one.
 * - `memory` and `sqlite:PATH`: InMemoryBuildQueue over a journal (create-state-store.ts);
 * - `redis://HOST:PORT[/DB]`: RedisBuildQueue, the queue shared by a fleet of schedulers.
 * Resolves once the state is loaded (or Redis answers), so that ports open only after it.
 */
import type { BuildQueue } from './build-queue.js';
import type { InMemoryBuildQueueOptions } from './build-queue-options.js';
import { createStateStore } from './create-state-store.js';
import { InMemoryBuildQueue } from './in-memory-build-queue.js';
import { parseRedisUrl } from './redis/redis-url.js';
import { parseStateSpec } from './state-store.js';

export interface OpenedBuildQueue {
  buildQueue: BuildQueue;
  /** Closes the queue (if `buildQueue.close()` has not already) and then releases its state. */
  close(): void;
}

/** Opens the queue `setting` names with `opts`; INVALID_ARGUMENT for a malformed setting, UNAVAILABLE for an unreachable Redis. */
export async function createBuildQueue(setting: string, opts: Omit<InMemoryBuildQueueOptions, 'state'>): Promise<OpenedBuildQueue> {
  const spec = parseStateSpec(setting);
  if (spec?.kind === 'redis') {
    // ioredis is loaded only by configurations that use Redis (it is a tenth of a second of start-up).
    const { RedisBuildQueue } = await import('./redis/redis-build-queue.js');
    const buildQueue = await RedisBuildQueue.open({ ...opts, redis: parseRedisUrl(spec.url) });
    return {
      buildQueue,
      close: () => {
        buildQueue.close();
        buildQueue.disconnect();
      },
    };
  }
  const state = createStateStore(setting);
  let buildQueue: InMemoryBuildQueue;
  try {
    // Restores operations, queue and leases.
    buildQueue = new InMemoryBuildQueue({ ...opts, state });
  } catch (err) {
    state.close();
    throw err;
  }
  return {
    buildQueue,
    close: () => {
      buildQueue.close();
      state.close();
    },
  };
}

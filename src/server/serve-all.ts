/**
 * `bzutil serve all`: the embedded default. An apiserver, a scheduler and one worker with N slots in
 * one process, built from one configuration tree and sharing the stores in memory: the scheduler
 * checks inputs and writes the action cache without a network hop, and the worker reads inputs and
 * writes outputs straight to the CAS. Only the worker protocol goes over gRPC, on the scheduler's
 * private worker port (a Unix socket only this user can reach, unless scheduler.worker_listen_address
 * opens a TCP port for more workers), so the worker code is the same as on a remote host.
 */
import type { ResolvedConfig } from '../lib/config/config.js';
import type { ApiServer } from './apiserver.js';
import { createApiServer, createScheduler, createWorker, type ServerDeps } from './create-servers.js';
import type { UiSources } from './http/ui/pages.js';
import type { Scheduler } from './scheduler.js';
import type { WorkerHandle } from './worker.js';

export interface ServeAll {
  apiserver: ApiServer;
  scheduler: Scheduler;
  /** Absent with `worker.slots: 0`. */
  worker: WorkerHandle | undefined;
  /**
   * Graceful shutdown, first half: both ports report NOT_SERVING, the worker takes no new task and
   * its running ones (and the scheduler's queue) get up to `graceMs` to finish.
   */
  drain(graceMs: number): Promise<void>;
  /** Stops everything; running calls get up to `graceMs` (default 2 s). */
  close(graceMs?: number): Promise<void>;
}

/** What the web UI of `serve all` shows: the shared stores, the queue and its workers. */
export function uiOfServeAll(all: ServeAll): UiSources {
  return {
    contentAddressableStorage: all.apiserver.contentAddressableStorage,
    actionCache: all.apiserver.actionCache,
    buildQueue: all.scheduler.buildQueue,
    workers: () => all.scheduler.workers(),
    readLogStream: all.scheduler.readLogStream,
  };
}

export async function startAll(config: ResolvedConfig, deps: ServerDeps): Promise<ServeAll> {
  const { logger } = deps;
  const apiserver = await createApiServer(config, { ...deps, logger: logger.child('apiserver') });
  let scheduler: Scheduler | undefined;
  let worker: WorkerHandle | undefined;
  try {
    const stores = { contentAddressableStorage: apiserver.contentAddressableStorage, actionCache: apiserver.actionCache, assetIndex: apiserver.assetIndex };
    scheduler = await createScheduler(config, { ...deps, logger: logger.child('scheduler') }, stores);
    if ((config.worker?.slots ?? 0) > 0) {
      worker = await createWorker(config, { ...deps, logger: logger.child('worker') }, {
        schedulerAddress: scheduler.workerAddress,
        contentAddressableStorage: apiserver.contentAddressableStorage,
      });
    }
  } catch (err) {
    await scheduler?.close();
    await apiserver.close();
    throw err;
  }
  const started = scheduler;
  return {
    apiserver,
    scheduler: started,
    worker,
    drain: async (graceMs) => {
      const deadline = Date.now() + graceMs;
      apiserver.setServing(false);
      started.setServing(false);
      // The scheduler refuses new Executes but lets queued and running operations finish, so the
      // in-process worker keeps taking tasks until none is open; only then does it drain.
      await started.drain(graceMs);
      await worker?.drain(Math.max(0, deadline - Date.now()));
    },
    close: async (graceMs?: number) => {
      await worker?.close();
      await started.close(graceMs);
      await apiserver.close(graceMs);
    },
  };
}

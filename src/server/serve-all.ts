/**
 * `bzutil serve all`: the embedded default. An apiserver, a scheduler and one worker with N slots in
 * one process, sharing the stores in memory: the scheduler checks inputs and writes the action cache
 * without a network hop, and the worker reads inputs and writes outputs straight to the CAS. Only the
 * worker protocol goes over loopback gRPC, so the worker code is the same as on a remote host.
 */
import type { Logger } from '../lib/util/logger.js';
import { startApiServer, type ApiServer } from './apiserver.js';
import { startScheduler, type Scheduler } from './scheduler.js';
import { startWorker, type WorkerHandle } from './worker.js';

export interface ServeAllConfig {
  apiserverListenAddress: string;
  schedulerListenAddress: string;
  /** Holds `cas/` and `ac/`. Ignored with `inMemory`. */
  storageDir: string;
  maxSizeBytes: number;
  /** See ApiServerConfig.memoryCacheSizeBytes. */
  memoryCacheSizeBytes?: number;
  inMemory: boolean;
  /** Worker scratch space: `actions/` and the input file cache `cache/`. */
  workDir: string;
  slots: number;
  platform: { name: string; value: string }[];
  /** How long a silent worker keeps its tasks before they are requeued. @default 30 s */
  workerLeaseMs?: number;
  logger: Logger;
}

export interface ServeAll {
  apiserver: ApiServer;
  scheduler: Scheduler;
  worker: WorkerHandle | undefined;
  close(): Promise<void>;
}

export async function startAll(config: ServeAllConfig): Promise<ServeAll> {
  const { logger } = config;
  const apiserver = await startApiServer({
    listenAddress: config.apiserverListenAddress,
    storageDir: config.storageDir,
    maxSizeBytes: config.maxSizeBytes,
    ...(config.memoryCacheSizeBytes !== undefined ? { memoryCacheSizeBytes: config.memoryCacheSizeBytes } : {}),
    inMemory: config.inMemory,
    logger: logger.child('apiserver'),
  });
  let scheduler: Scheduler | undefined;
  let worker: WorkerHandle | undefined;
  try {
    scheduler = await startScheduler({
      listenAddress: config.schedulerListenAddress,
      contentAddressableStorage: apiserver.contentAddressableStorage,
      actionCache: apiserver.actionCache,
      workerLeaseMs: config.workerLeaseMs,
      logger: logger.child('scheduler'),
    });
    if (config.slots > 0) {
      worker = await startWorker({
        schedulerAddress: `127.0.0.1:${scheduler.port}`,
        contentAddressableStorage: apiserver.contentAddressableStorage,
        slots: config.slots,
        workDir: config.workDir,
        platform: config.platform,
        logger: logger.child('worker'),
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
    close: async () => {
      await worker?.close();
      await started.close();
      await apiserver.close();
    },
  };
}

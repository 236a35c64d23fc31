/**
 * One worker of `serve apiserver --processes N` (apiserver-cluster.ts): builds the apiserver through
 * createApiServer with its share of the disk stores, tells the primary its address (or why it could
 * not start), answers the primary's metrics requests, and shuts down gracefully when the primary
 * asks (or on its own SIGTERM/SIGINT, e.g. Ctrl-C reaching the whole process group).
 */
import cluster from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { SharedDirectory } from '../lib/blobstore/shared-blob-directory.js';
import type { ResolvedConfig } from '../lib/config/config.js';
import type { Logger } from '../lib/util/logger.js';
import { createMetricsRegistry } from '../lib/util/metrics.js';
import { parseDurationMs } from '../lib/util/units.js';
import { createApiServer } from './create-servers.js';
import { nextSignal, shutdownGracefully } from './run-servers.js';

/** Messages between the primary and a worker over the cluster's IPC channel. */
export type ProcessMessage = { type: 'bzutil:ready'; address: string } | { type: 'bzutil:failed'; message: string } | { type: 'bzutil:shutdown' };
export const SHUTDOWN_MESSAGE: ProcessMessage = { type: 'bzutil:shutdown' };

export async function runApiServerProcess(config: ResolvedConfig, logger: Logger, share: SharedDirectory): Promise<void> {
  const send = (message: ProcessMessage) => process.send?.(message);
  const metrics = createMetricsRegistry();
  // Answers the primary's scrapes of /metrics with this registry (prom-client's cluster support).
  AggregatorRegistry.setRegistries([metrics]);
  new AggregatorRegistry();
  const shutdownAsked = new Promise<string>((resolve) => {
    const onMessage = (message: ProcessMessage) => {
      if (message?.type !== 'bzutil:shutdown') return;
      process.off('message', onMessage);
      resolve('shutdown from the primary');
    };
    process.on('message', onMessage);
  });
  let server;
  try {
    server = await createApiServer(config, { logger, metrics, sharedDirectory: share });
  } catch (err) {
    // Tell the primary why, then close the IPC channel (it would keep this process alive).
    await new Promise((resolve) => process.send?.({ type: 'bzutil:failed', message: (err as Error).message } satisfies ProcessMessage, undefined, {}, resolve) ?? resolve(undefined));
    cluster.worker?.disconnect();
    throw err;
  }
  send({ type: 'bzutil:ready', address: server.address });
  const why = await Promise.race([nextSignal(), shutdownAsked]);
  const graceMs = parseDurationMs(config.shutdown_grace_period);
  logger.info(`Received ${why}, shutting down`, { gracePeriodMs: graceMs });
  await shutdownGracefully(server, graceMs, () => nextSignal().then((again) => logger.warn(`Received ${again}, stopping now`)));
  logger.info('Stopped');
  cluster.worker?.disconnect();
}

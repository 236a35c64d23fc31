/**
 * The life of a `bzutil serve …` process: start its servers with one metrics registry, open the
 * operator's HTTP port, run until SIGTERM or SIGINT, then shut down gracefully: health reports
 * NOT_SERVING at once, running uploads and actions get `shutdown_grace_period` to finish, and then
 * everything is closed (the process exits 0). A second signal during the grace period cuts it short.
 */
import type { ResolvedConfig } from '../lib/config/config.js';
import type { Logger } from '../lib/util/logger.js';
import { createMetricsRegistry } from '../lib/util/metrics.js';
import { parseDurationMs } from '../lib/util/units.js';
import { createHttpServer, type ServerDeps } from './create-servers.js';
import type { HttpServer } from './http/http-server.js';
import type { UiSources } from './http/ui/pages.js';

/** What a role starts: drained first (when it can be), then closed with what is left of the grace period. */
export interface Drainable {
  drain?(graceMs: number): Promise<void>;
  close(graceMs?: number): Promise<void>;
}

export async function runServersUntilSignal<T extends Drainable>(
  config: ResolvedConfig,
  logger: Logger,
  start: (deps: ServerDeps) => Promise<T>,
  ready: (servers: T) => void,
  /** What the web UI on the HTTP port shows. @default no UI */
  ui?: (servers: T) => UiSources,
): Promise<void> {
  const metrics = createMetricsRegistry();
  const servers = await start({ logger, metrics });
  let http: HttpServer | undefined;
  try {
    http = await createHttpServer(config, { logger: logger.child('http'), metrics, ui: ui?.(servers) });
  } catch (err) {
    await servers.close(0);
    throw err;
  }
  ready(servers);
  if (http) process.stdout.write(`http listening on ${http.address}\n`);
  const signal = await nextSignal();
  const graceMs = parseDurationMs(config.shutdown_grace_period);
  logger.info(`Received ${signal}, shutting down`, { gracePeriodMs: graceMs });
  await shutdownGracefully(servers, graceMs, () => nextSignal().then((again) => logger.warn(`Received ${again} again, stopping now`)));
  await http?.close();
  logger.info('Stopped');
}

/** Drains `servers` for up to `graceMs` (less if `cutShort` resolves first), then closes them. */
export async function shutdownGracefully(servers: Drainable, graceMs: number, cutShort?: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + graceMs;
  let cut = false;
  const drained = servers.drain?.(graceMs) ?? Promise.resolve();
  if (cutShort) await Promise.race([drained, cutShort().then(() => (cut = true))]);
  else await drained;
  await servers.close(cut ? 0 : Math.max(0, deadline - Date.now()));
}

/** Resolves at the next SIGINT or SIGTERM. */
export function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

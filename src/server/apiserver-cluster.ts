/**
 * `serve apiserver --processes N` (apiserver.processes): N processes serve one gRPC port.
 *
 * Why node:cluster and not SO_REUSEPORT: grpc-js binds through `http2.Server.listen({host, port})`
 * and has no option to set SO_REUSEPORT, and Node 20's `net` has none either (`reusePort` came in
 * Node 22.12/23.1). node:cluster needs neither: the first process (the primary) binds the port,
 * and each worker's `listen` on that address is handed the primary's handle; on Linux the primary
 * accepts and passes connections to the workers in turn (SCHED_RR), so connections, not calls, are
 * spread. The workers re-run the same command line, so each builds its apiserver from the same
 * configuration through createApiServer; the only difference is their rank (PROCESS_RANK_ENV),
 * which gives each its share of the disk stores (lib/blobstore/shared-blob-directory.ts).
 *
 * The primary holds no store. It serves the HTTP port, where /metrics is the sum over the workers
 * (prom-client's AggregatorRegistry asks each one over the cluster's IPC channel) with
 * `bzutil_apiserver_processes` telling how many there are; the web UI, which reads the stores, is
 * not served. It restarts a worker that dies (at most MAX_RESTARTS in RESTART_WINDOW_MS, then it
 * stops all and fails), and fails at once if a worker cannot start (e.g. the port is taken).
 * SIGHUP is passed on to the workers (TLS and token files re-read). SIGTERM or SIGINT: each worker is asked to shut down gracefully (health NOT_SERVING, running
 * calls get shutdown_grace_period), and the primary exits when all have. If the primary dies
 * without that (SIGKILL), the workers see their IPC channel close and exit (node:cluster does it).
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type PrometheusContentType } from 'prom-client';
import { authEnabled } from '../lib/auth/create-authenticator.js';
import type { ResolvedConfig } from '../lib/config/config.js';
import type { Logger } from '../lib/util/logger.js';
import { counter, gauge } from '../lib/util/metrics.js';
import { parseDurationMs } from '../lib/util/units.js';
import { createHttpServer } from './create-servers.js';
import type { HttpServer } from './http/http-server.js';
import { nextSignal } from './run-servers.js';
import { type ProcessMessage, SHUTDOWN_MESSAGE, runApiServerProcess } from './apiserver-process.js';

/** The worker's rank (0..N-1), kept across its restarts. */
export const PROCESS_RANK_ENV = 'BZUTIL_APISERVER_PROCESS';
/** Restarts allowed within RESTART_WINDOW_MS before the primary gives up. */
export const MAX_RESTARTS = 5;
export const RESTART_WINDOW_MS = 60_000;
/** What a worker is given beyond the grace period to exit before it is killed. */
const EXIT_MARGIN_MS = 5_000;

/** Runs this process's part of `serve apiserver --processes N`: the primary, or one of its workers. */
export async function serveApiServerProcesses(config: ResolvedConfig, logger: Logger, ready: (address: string) => void): Promise<void> {
  const processes = config.apiserver!.processes;
  const rank = process.env[PROCESS_RANK_ENV];
  if (cluster.isWorker && rank !== undefined) {
    return runApiServerProcess(config, logger.child(`process ${rank}`), { processes, rank: Number(rank) });
  }
  return new Primary(config, logger, processes).run(ready);
}

class Primary {
  private readonly workers = new Map<number, Worker>();
  private readonly restarts: number[] = [];
  private readonly metrics = new ClusterMetricsRegistry();
  private readonly running = gauge(this.metrics, { name: 'bzutil_apiserver_processes', help: 'Apiserver processes serving the port; /metrics sums their metrics.' });
  private readonly restartCount = counter(this.metrics, { name: 'bzutil_apiserver_process_restarts_total', help: 'Apiserver processes restarted after they died.' });
  private stopping = false;
  /** Set when the primary gives up: run() rejects with it. */
  private fatal?: (err: Error) => void;

  constructor(
    private readonly config: ResolvedConfig,
    private readonly logger: Logger,
    private readonly processes: number,
  ) {}

  async run(ready: (address: string) => void): Promise<void> {
    const failed = new Promise<never>((_, reject) => (this.fatal = reject));
    failed.catch(() => {});
    let http: HttpServer | undefined;
    try {
      const addresses = await Promise.race([Promise.all(Array.from({ length: this.processes }, (_, rank) => this.fork(rank))), failed]);
      if (new Set(addresses).size !== 1) throw new Error(`Failed to start apiserver processes: they listen on different addresses (${[...new Set(addresses)].join(', ')})`);
      http = await createHttpServer(this.config, { logger: this.logger.child('http'), metrics: this.metrics });
      ready(addresses[0]!);
      if (http) process.stdout.write(`http listening on ${http.address}\n`);
      this.forwardSighup();
      const signal = await Promise.race([nextSignal(), failed]);
      this.logger.info(`Received ${signal}, shutting down ${this.processes} apiserver processes`);
    } catch (err) {
      await this.stopAll();
      await http?.close();
      throw err;
    }
    await this.stopAll();
    await http?.close();
    this.logger.info('Stopped');
  }

  /** Forks the worker of `rank`; resolves with its address once it listens, rejects if it cannot start. */
  private fork(rank: number): Promise<string> {
    const worker = cluster.fork({ [PROCESS_RANK_ENV]: String(rank) });
    this.workers.set(rank, worker);
    // A message to a process that has just exited fails with EPIPE: its 'exit' handler below deals with it.
    worker.on('error', (err: Error) => this.logger.debug('Apiserver process channel error', { rank, error: err.message }));
    return new Promise((resolve, reject) => {
      let started = false;
      worker.on('message', (message: ProcessMessage) => {
        if (message?.type === 'bzutil:ready') {
          started = true;
          this.running.set(this.workers.size);
          this.logger.info('Apiserver process listening', { rank, pid: worker.process.pid, address: message.address });
          resolve(message.address);
        } else if (message?.type === 'bzutil:failed') {
          reject(new Error(`Failed to start apiserver process ${rank}: ${message.message}`));
        }
      });
      worker.on('exit', (code, signal) => {
        if (this.workers.get(rank) === worker) this.workers.delete(rank);
        this.running.set(this.workers.size);
        if (!started) {
          reject(new Error(`Failed to start apiserver process ${rank}: it exited (${code ?? signal}) before listening`));
          return;
        }
        if (!this.stopping) this.restart(rank, code, signal);
      });
    });
  }

  /** A worker died: start another with its rank, unless they die too often. */
  private restart(rank: number, code: number | null, signal: string | null): void {
    const now = Date.now();
    this.restarts.push(now);
    while (this.restarts.length > 0 && this.restarts[0]! <= now - RESTART_WINDOW_MS) this.restarts.shift();
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    if (this.restarts.length > MAX_RESTARTS) {
      this.fatal?.(new Error(`Apiserver processes died ${this.restarts.length} times within ${RESTART_WINDOW_MS / 1000}s (the last: process ${rank}, ${how}); giving up`));
      return;
    }
    this.logger.error('Apiserver process died; starting it again', { rank, how });
    this.restartCount.inc();
    this.fork(rank).catch((err: Error) => {
      if (!this.stopping) this.fatal?.(err);
    });
  }

  /**
   * With TLS or tokens configured, SIGHUP to the primary makes every worker re-read its files, as
   * in one process (the primary's HTTP port re-reads its own); without, SIGHUP ends the primary, as
   * it ends a single apiserver.
   */
  private forwardSighup(): void {
    if (this.config.apiserver!.tls === undefined && !authEnabled(this.config.auth)) return;
    process.on('SIGHUP', () => {
      for (const w of this.workers.values()) if (!w.isDead()) w.process.kill('SIGHUP');
    });
  }

  /** Asks every worker to shut down gracefully; kills those still running after the grace period and a margin. */
  private async stopAll(): Promise<void> {
    this.stopping = true;
    const workers = [...this.workers.values()].filter((w) => !w.isDead());
    if (workers.length === 0) return;
    const exited = Promise.all(workers.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve())))));
    // A process exiting meanwhile (it failed to start) cannot take the message: its exit is awaited anyway.
    for (const w of workers) if (w.isConnected()) w.send(SHUTDOWN_MESSAGE, () => {});
    // A second signal cuts the workers' grace period short, as it would in one process.
    const again = () => {
      for (const w of workers) if (!w.isDead()) w.process.kill('SIGTERM');
    };
    process.once('SIGINT', again);
    process.once('SIGTERM', again);
    const killAfter = setTimeout(() => {
      this.logger.warn('Apiserver processes still running after the grace period; killing them');
      for (const w of workers) if (!w.isDead()) w.process.kill('SIGKILL');
    }, parseDurationMs(this.config.shutdown_grace_period) + EXIT_MARGIN_MS);
    await exited;
    clearTimeout(killAfter);
    process.off('SIGINT', again);
    process.off('SIGTERM', again);
  }
}

/**
 * The primary's /metrics: its own series (processes, restarts) and the sum of the workers'
 * registries. A worker that dies during a scrape leaves prom-client waiting (5 s) and failing: the
 * scrape then has the primary's series and a comment saying why the rest is missing.
 */
class ClusterMetricsRegistry extends AggregatorRegistry<PrometheusContentType> {
  override async metrics(): Promise<string> {
    const [own, workers] = await Promise.all([super.metrics(), this.clusterMetrics().catch((err: Error) => `# the apiserver processes' metrics are missing from this scrape: ${err.message}\n`)]);
    return `${own}\n${workers}`;
  }
}

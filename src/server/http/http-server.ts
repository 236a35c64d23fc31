/**
 * The operator's HTTP port (`http.listen_address`, `--http_listen`): Prometheus metrics at
 * `GET /metrics` from the process's one registry, shared by every server of the process, and the
 * web UI (ui/pages.ts) when the process holds stores to show. Plain node:http, no framework.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../lib/util/logger.js';
import type { Registry } from '../../lib/util/metrics.js';
import { renderUi, type UiSources } from './ui/pages.js';

export interface HttpServerOptions {
  /** `host:port`; port 0 picks a free one. */
  listenAddress: string;
  metrics: Registry;
  logger: Logger;
  /** What the web UI shows; without it the port serves /metrics only. */
  ui?: UiSources;
}

export interface HttpServer {
  port: number;
  /** `host:port` as bound. */
  address: string;
  close(): Promise<void>;
}

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const server = createServer((req, res) => {
    route(req, res, opts).catch((err: unknown) => {
      opts.logger.error('HTTP request failed', { path: req.url, error: err });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('Internal error\n');
    });
  });
  const colon = opts.listenAddress.lastIndexOf(':');
  const host = opts.listenAddress.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const requestedPort = Number(opts.listenAddress.slice(colon + 1));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`Failed to listen on ${opts.listenAddress}: ${err.message}`, { cause: err })));
    server.listen(requestedPort, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const address = `${opts.listenAddress.slice(0, colon)}:${port}`;
  opts.logger.info('http listening', { address });
  let closing: Promise<void> | undefined;
  return {
    port,
    address,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function route(req: IncomingMessage, res: ServerResponse, opts: HttpServerOptions): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('Method not allowed\n');
    return;
  }
  if (path === '/metrics') {
    const body = await opts.metrics.metrics();
    res.writeHead(200, { 'content-type': opts.metrics.contentType }).end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  const page = opts.ui ? await renderUi(new URL(req.url ?? '/', 'http://localhost'), opts.ui) : undefined;
  if (page) {
    res.writeHead(page.status, { 'content-type': page.contentType, ...page.headers }).end(req.method === 'HEAD' ? undefined : page.body);
    return;
  }
  if (path === '/') {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('bzutil\n  /metrics  Prometheus metrics\n');
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found\n');
}

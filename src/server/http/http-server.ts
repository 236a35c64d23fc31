/**
 * The operator's HTTP port (`http.listen_address`, `--http_listen`): Prometheus metrics at
 * `GET /metrics` from the process's one registry, shared by every server of the process, and the
 * web UI (ui/pages.ts) when the process holds stores to show. Plain node:http, no framework. With
 * an authenticator every path but /login and /logout needs a credential (http-auth.ts).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Authenticator } from '../../lib/auth/authenticator.js';
import type { Logger } from '../../lib/util/logger.js';
import type { Registry } from '../../lib/util/metrics.js';
import { type Access, checkHttpAccess, isRefusal, loginPage, OPEN_ACCESS, readForm, safeNext, tokenCookie } from './http-auth.js';
import { renderUi, type UiSources } from './ui/pages.js';

export interface HttpServerOptions {
  /** `host:port`; port 0 picks a free one. */
  listenAddress: string;
  metrics: Registry;
  logger: Logger;
  /** What the web UI shows; without it the port serves /metrics only. */
  ui?: UiSources;
  /** When set, every page and /metrics need a credential (http-auth.ts). @default open */
  authenticator?: Authenticator;
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

const TEXT = { 'content-type': 'text/plain; charset=utf-8' };
const HTML = { 'content-type': 'text/html; charset=utf-8' };

async function route(req: IncomingMessage, res: ServerResponse, opts: HttpServerOptions): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname;
  if (opts.authenticator && (path === '/login' || path === '/logout')) return login(req, res, url, opts.authenticator);
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', ...TEXT }).end('Method not allowed\n');
    return;
  }
  let access: Access = OPEN_ACCESS;
  if (opts.authenticator) {
    const checked = await checkHttpAccess(opts.authenticator, req, url);
    if (isRefusal(checked)) return refuse(req, res, url, checked.status, checked.message);
    access = checked;
    res.setHeader('cache-control', 'no-store');
  }
  if (path === '/metrics') {
    const body = await opts.metrics.metrics();
    res.writeHead(200, { 'content-type': opts.metrics.contentType }).end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  const page = opts.ui ? await renderUi(url, opts.ui, access) : undefined;
  if (page) {
    if (page.stream) {
      res.writeHead(page.status, { 'content-type': page.contentType, ...page.headers });
      if (req.method === 'HEAD') return void res.end();
      return page.stream(res);
    }
    res.writeHead(page.status, { 'content-type': page.contentType, ...page.headers }).end(req.method === 'HEAD' ? undefined : page.body);
    return;
  }
  if (path === '/') {
    res.writeHead(200, TEXT).end('bzutil\n  /metrics  Prometheus metrics\n');
    return;
  }
  res.writeHead(404, TEXT).end('Not found\n');
}

/** 401 or 403: a browser (it accepts HTML) gets the login form, anything else a line of text. */
function refuse(req: IncomingMessage, res: ServerResponse, url: URL, status: 401 | 403, message: string): void {
  const headers = status === 401 ? { 'www-authenticate': 'Bearer realm="bzutil"', 'cache-control': 'no-store' } : { 'cache-control': 'no-store' };
  const browser = (req.headers.accept ?? '').includes('text/html') && url.pathname !== '/metrics';
  if (browser) res.writeHead(status, { ...HTML, ...headers }).end(loginPage(`${url.pathname}${url.search}`, message));
  else res.writeHead(status, { ...TEXT, ...headers }).end(`${message}\n`);
}

/** GET /login: the form; POST /login: check the token, set the cookie, go back; POST /logout: clear it. */
async function login(req: IncomingMessage, res: ServerResponse, url: URL, authenticator: Authenticator): Promise<void> {
  if (req.method === 'GET' || req.method === 'HEAD') {
    res.writeHead(200, { ...HTML, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : loginPage(url.searchParams.get('next') ?? '/'));
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'GET, HEAD, POST', ...TEXT }).end('Method not allowed\n');
    return;
  }
  if (url.pathname === '/logout') {
    res.writeHead(303, { location: '/login', 'set-cookie': tokenCookie(undefined), 'cache-control': 'no-store' }).end();
    return;
  }
  const form = await readForm(req);
  if (!form) {
    res.writeHead(413, TEXT).end('Request too large\n');
    return;
  }
  const token = form.get('token') ?? '';
  const next = safeNext(form.get('next'));
  try {
    await authenticator.authenticate(token);
  } catch {
    res.writeHead(401, { ...HTML, 'cache-control': 'no-store' }).end(loginPage(next, 'Invalid credentials: the token is not known'));
    return;
  }
  res.writeHead(303, { location: next, 'set-cookie': tokenCookie(token), 'cache-control': 'no-store' }).end();
}

/**
 * The operator's HTTP port with auth on (a token file): every page and /metrics need a credential,
 * by header or by the cookie POST /login sets; a wrong token is 401, a missing permission or
 * another instance 403; no answer ever contains a token, the token file's path or a secret. With
 * auth off (the other serve all) the same paths answer without a credential.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Permission } from '../../../src/lib/auth/principal.js';
import { createTokenEntry, type TokenEntry } from '../../../src/lib/auth/token-file.js';
import type { HttpServer } from '../../../src/server/http/http-server.js';
import { startServeAllInProcess } from '../../helpers/serve-all-in-process.js';

const EMPTY = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0';
const WRONG = 'wrong-token-8c1d2e';

describe('HTTP port with auth on', () => {
  let work: string;
  let tokenFile: string;
  let http: HttpServer;
  let stop: (() => Promise<void>) | undefined;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'bzutil-http-auth-'));
    const entries: TokenEntry[] = [];
    const add = (name: string, instances: string[], permissions: Permission[]) => {
      const { token, entry } = createTokenEntry({ name, instances, permissions });
      tokens[name] = token;
      entries.push(entry);
    };
    add('viewer', [''], ['operations.read']);
    add('browser', ['', 'main'], ['operations.read', 'cas.read', 'ac.read']);
    add('operator', ['*'], ['admin']);
    tokenFile = join(work, 'tokens.json');
    writeFileSync(tokenFile, JSON.stringify({ tokens: entries }));
    ({ http, close: stop } = await startServeAllInProcess(work, { auth: { tokens_file: tokenFile } }));
  });
  afterAll(async () => {
    await stop?.();
    rmSync(work, { recursive: true, force: true });
  });

  const get = (path: string, headers: Record<string, string> = {}) => fetch(`http://${http.address}${path}`, { headers, redirect: 'manual' });
  const bearer = (name: string) => ({ authorization: `Bearer ${tokens[name]}` });
  /** The body never tells a secret: no token, no token file path. */
  const expectNoSecrets = (body: string) => {
    for (const t of [...Object.values(tokens), WRONG]) expect(body).not.toContain(t);
    expect(body).not.toContain(tokenFile);
    expect(body).not.toContain(work);
  };

  it('answers 401 without a credential, on pages and /metrics, with WWW-Authenticate', async () => {
    for (const path of ['/', '/metrics', `/blob/${EMPTY}`, '/ac', '/operation?name=operations/x', '/no-such-page']) {
      const res = await get(path);
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="bzutil"');
      expectNoSecrets(await res.text());
    }
  });

  it('answers 401 for a wrong token, by header or cookie, without echoing it', async () => {
    for (const headers of [{ authorization: `Bearer ${WRONG}` }, { cookie: `bzutil_token=${WRONG}` }, { authorization: 'Basic abc' }]) {
      const res = await get('/', headers);
      expect(res.status).toBe(401);
      expectNoSecrets(await res.text());
    }
  });

  it('shows a browser the login form on 401', async () => {
    const res = await get('/ac', { accept: 'text/html' });
    expect(res.status).toBe(401);
    const body = await res.text();
    expect(body).toContain('<form method="post" action="/login">');
    expect(body).toContain('value="/ac"');
  });

  it('answers 403 naming the missing permission, 200 with it', async () => {
    const metrics = await get('/metrics', bearer('viewer'));
    expect(metrics.status).toBe(403);
    const text = await metrics.text();
    expect(text).toContain('lacks permission admin');
    expectNoSecrets(text);
    const blob = await get(`/blob/${EMPTY}`, bearer('viewer'));
    expect(blob.status).toBe(403);
    expect(await blob.text()).toContain('cas.read');
    const ac = await get(`/ac?digest=${EMPTY}`, bearer('viewer'));
    expect(ac.status).toBe(403);
    expect(await ac.text()).toContain('ac.read');
    expect((await get('/', bearer('viewer'))).status).toBe(200);
    expect((await get(`/blob/${EMPTY}`, bearer('browser'))).status).toBe(200);
    expect((await get(`/ac?digest=${EMPTY}`, bearer('browser'))).status).toBe(200);
    const ok = await get('/metrics', bearer('operator'));
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('bzutil_');
  });

  it('checks the instance a page names', async () => {
    expect((await get(`/blob/${EMPTY}?instance=main`, bearer('browser'))).status).toBe(200);
    const other = await get(`/blob/${EMPTY}?instance=other`, bearer('browser'));
    expect(other.status).toBe(403);
    expect(await other.text()).toContain('"other"');
    expect((await get('/operation?name=other/operations/00000000-0000-4000-8000-000000000000', bearer('browser'))).status).toBe(403);
    // Live logs need operations.read in the operation's instance: authorized, then 404 (no such operation).
    expect((await get('/logs?name=operations/00000000-0000-4000-8000-000000000000', bearer('viewer'))).status).toBe(404);
    expect((await get('/logs?name=other/operations/00000000-0000-4000-8000-000000000000', bearer('viewer'))).status).toBe(403);
    expect((await get('/logs?name=operations/00000000-0000-4000-8000-000000000000')).status).toBe(401);
  });

  it('logs a browser in with an HttpOnly SameSite=Strict cookie, and out again', async () => {
    const form = (token: string, next: string) => ({ method: 'POST', body: new URLSearchParams({ token, next }), redirect: 'manual' as const });
    const bad = await fetch(`http://${http.address}/login`, form(WRONG, '/'));
    expect(bad.status).toBe(401);
    expect(bad.headers.get('set-cookie')).toBeNull();
    expectNoSecrets(await bad.text());

    const good = await fetch(`http://${http.address}/login`, form(tokens.browser!, '/ac'));
    expect(good.status).toBe(303);
    expect(good.headers.get('location')).toBe('/ac');
    const cookie = good.headers.get('set-cookie')!;
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Strict');
    const pair = cookie.split(';')[0]!;
    const page = await get('/ac', { cookie: pair });
    expect(page.status).toBe(200);
    expect(page.headers.get('cache-control')).toBe('no-store');

    const offsite = await fetch(`http://${http.address}/login`, form(tokens.browser!, '//evil.example/'));
    expect(offsite.headers.get('location')).toBe('/');

    const out = await fetch(`http://${http.address}/logout`, { method: 'POST', redirect: 'manual' });
    expect(out.status).toBe(303);
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
  });
});

describe('HTTP port with auth off', () => {
  let work: string;
  let http: HttpServer;
  let stop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'bzutil-http-open-'));
    ({ http, close: stop } = await startServeAllInProcess(work));
  });
  afterAll(async () => {
    await stop?.();
    rmSync(work, { recursive: true, force: true });
  });

  it('serves pages and /metrics without a credential', async () => {
    for (const path of ['/', '/metrics', `/blob/${EMPTY}`]) expect((await fetch(`http://${http.address}${path}`)).status, path).toBe(200);
    expect((await fetch(`http://${http.address}/login`, { method: 'POST' })).status).toBe(405);
  });
});

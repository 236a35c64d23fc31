import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JwtAuthenticator } from '../../../src/lib/auth/jwt.js';
import { Code, type StatusError } from '../../../src/lib/errors/status-error.js';
import { silentLogger } from '../../../src/lib/util/logger.js';

let dir: string;
let key: CryptoKey;
let otherKey: CryptoKey;
let jwk: JWK;
let otherJwk: JWK;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bzutil-jwt-'));
  const pair = await generateKeyPair('ES256');
  key = pair.privateKey;
  jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const other = await generateKeyPair('ES256');
  otherKey = other.privateKey;
  otherJwk = { ...(await exportJWK(other.publicKey)), kid: 'k2', alg: 'ES256', use: 'sig' };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sign(claims: Record<string, unknown>, opts: { key?: CryptoKey; kid?: string; expiresAt?: number } = {}): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: opts.kid ?? 'k1' }).setIssuedAt().setSubject('ci-bot');
  jwt.setExpirationTime(opts.expiresAt ?? Math.floor(Date.now() / 1000) + 600);
  return jwt.sign(opts.key ?? key);
}

async function jwksFile(keys: JWK[]): Promise<string> {
  const file = join(dir, `jwks-${keys.map((k) => k.kid).join('-')}.json`);
  await writeFile(file, JSON.stringify({ keys }));
  return file;
}

async function refusal(p: Promise<unknown>): Promise<StatusError> {
  return p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (err: unknown) => err as StatusError,
  );
}

describe('JwtAuthenticator', () => {
  it('verifies a token against a JWKS file and takes permissions and instances from claims', async () => {
    const auth = await JwtAuthenticator.open({ jwks: await jwksFile([jwk]) }, silentLogger);
    const principal = await auth.authenticate(await sign({ permissions: ['cas.read', 'execute', 'bogus'], instances: 'main team/*' }));
    expect(principal.name).toBe('ci-bot');
    expect([...principal.permissions].sort()).toEqual(['cas.read', 'execute']);
    expect(principal.instances).toEqual(['main', 'team/*']);
  });

  it('reads other claim names when configured', async () => {
    const auth = await JwtAuthenticator.open({ jwks: await jwksFile([jwk]), permissionsClaim: 'scope', instancesClaim: 'bzutil/instances' }, silentLogger);
    const principal = await auth.authenticate(await sign({ scope: 'ac.read ac.write', 'bzutil/instances': ['x'] }));
    expect([...principal.permissions].sort()).toEqual(['ac.read', 'ac.write']);
    expect(principal.instances).toEqual(['x']);
  });

  it('refuses an expired token with UNAUTHENTICATED saying so', async () => {
    const auth = await JwtAuthenticator.open({ jwks: await jwksFile([jwk]) }, silentLogger);
    const token = await sign({ permissions: ['cas.read'] }, { expiresAt: Math.floor(Date.now() / 1000) - 3600 });
    const err = await refusal(auth.authenticate(token));
    expect(err.code).toBe(Code.UNAUTHENTICATED);
    expect(err.message).toMatch(/expired/);
    expect(err.message).not.toContain(token);
  });

  it('refuses a token signed by a key not in the JWKS, and one with a forged signature', async () => {
    const auth = await JwtAuthenticator.open({ jwks: await jwksFile([jwk]) }, silentLogger);
    expect((await refusal(auth.authenticate(await sign({}, { key: otherKey, kid: 'k2' })))).code).toBe(Code.UNAUTHENTICATED);
    const forged = await sign({ permissions: ['admin'] }, { key: otherKey, kid: 'k1' });
    const err = await refusal(auth.authenticate(forged));
    expect(err.code).toBe(Code.UNAUTHENTICATED);
    expect(err.message).toMatch(/signature/);
  });

  it('checks issuer and audience when configured', async () => {
    const auth = await JwtAuthenticator.open({ jwks: await jwksFile([jwk]), issuer: 'https://idp.example', audience: 'bzutil' }, silentLogger);
    expect((await refusal(auth.authenticate(await sign({ iss: 'https://evil.example', aud: 'bzutil' })))).message).toMatch(/"iss"/);
    expect((await auth.authenticate(await sign({ iss: 'https://idp.example', aud: 'bzutil', permissions: ['cas.read'] }))).permissions.has('cas.read')).toBe(true);
  });

  it('re-reads the JWKS file on reload (key rotation)', async () => {
    const file = join(dir, 'rotating.json');
    await writeFile(file, JSON.stringify({ keys: [jwk] }));
    const auth = await JwtAuthenticator.open({ jwks: file }, silentLogger);
    const withNewKey = await sign({ permissions: ['cas.read'] }, { key: otherKey, kid: 'k2' });
    expect((await refusal(auth.authenticate(withNewKey))).code).toBe(Code.UNAUTHENTICATED);
    await writeFile(file, JSON.stringify({ keys: [jwk, otherJwk] }));
    expect(await auth.reload()).toBe(true);
    expect((await auth.authenticate(withNewKey)).name).toBe('ci-bot');
  });

  it('fetches the JWKS from a URL', async () => {
    let fetches = 0;
    const server: Server = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
      const auth = await JwtAuthenticator.open({ jwks: url }, silentLogger);
      expect((await auth.authenticate(await sign({ permissions: ['execute'] }))).permissions.has('execute')).toBe(true);
      expect(fetches).toBe(1);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('refuses to start with an unreadable or invalid JWKS file', async () => {
    await expect(JwtAuthenticator.open({ jwks: join(dir, 'nope.json') }, silentLogger)).rejects.toThrow(/ENOENT/);
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{"keys": 3}');
    await expect(JwtAuthenticator.open({ jwks: bad }, silentLogger)).rejects.toThrow(/Invalid JWKS file/);
  });
});

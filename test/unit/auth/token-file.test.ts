import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { createTokenEntry, hashToken, parseTokenFile, TokenFileAuthenticator } from '../../../src/lib/auth/token-file.js';
import { silentLogger } from '../../../src/lib/util/logger.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bzutil-token-file-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<Code | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as StatusError).code;
  }
}

describe('TokenFileAuthenticator', () => {
  it('accepts a listed token and returns its name, permissions and instances', async () => {
    const { token, entry } = createTokenEntry({ name: 'ci', instances: ['main', 'team/*'], permissions: ['cas.read', 'execute'] });
    const file = join(dir, 'tokens.json');
    await writeFile(file, JSON.stringify({ tokens: [entry] }));
    const auth = await TokenFileAuthenticator.open({ file, logger: silentLogger });
    const principal = await auth.authenticate(token);
    expect(principal.name).toBe('ci');
    expect([...principal.permissions].sort()).toEqual(['cas.read', 'execute']);
    expect(principal.instances).toEqual(['main', 'team/*']);
  });

  it('reads YAML too', async () => {
    const file = join(dir, 'tokens.yaml');
    await writeFile(file, `tokens:\n  - name: ops\n    sha256: ${hashToken('secret-1')}\n    instances: ["*"]\n    permissions: [admin]\n`);
    const auth = await TokenFileAuthenticator.open({ file, logger: silentLogger });
    expect((await auth.authenticate('secret-1')).permissions.has('admin')).toBe(true);
  });

  it('refuses an unknown token with UNAUTHENTICATED whose message does not contain it', async () => {
    const file = join(dir, 'tokens.json');
    await writeFile(file, JSON.stringify({ tokens: [{ name: 'ci', sha256: hashToken('right'), instances: [''], permissions: ['cas.read'] }] }));
    const auth = await TokenFileAuthenticator.open({ file, logger: silentLogger });
    const err = await auth.authenticate('wrong-token-value').catch((e: unknown) => e as StatusError);
    expect(err).toBeInstanceOf(StatusError);
    expect((err as StatusError).code).toBe(Code.UNAUTHENTICATED);
    expect((err as StatusError).message).not.toContain('wrong-token-value');
  });

  it('stores only hashes: the file never contains the token', async () => {
    const { token, entry } = createTokenEntry({ name: 'ci', instances: ['main'], permissions: ['cas.read'] });
    expect(JSON.stringify(entry)).not.toContain(token);
    expect(entry.sha256).toBe(hashToken(token));
    expect(entry.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('reload picks up a new token and keeps the old tokens when the new file is invalid', async () => {
    const file = join(dir, 'tokens.json');
    await writeFile(file, JSON.stringify({ tokens: [{ name: 'a', sha256: hashToken('token-a'), instances: [''], permissions: ['cas.read'] }] }));
    const auth = await TokenFileAuthenticator.open({ file, logger: silentLogger });
    await writeFile(file, JSON.stringify({ tokens: [{ name: 'b', sha256: hashToken('token-b'), instances: [''], permissions: ['cas.read'] }] }));
    expect(await auth.reload()).toBe(true);
    expect((await auth.authenticate('token-b')).name).toBe('b');
    expect(await codeOf(auth.authenticate('token-a'))).toBe(Code.UNAUTHENTICATED);
    await writeFile(file, '{"tokens": [{"name": "c", "sha256": "nothex"}]}');
    expect(await auth.reload()).toBe(false);
    expect((await auth.authenticate('token-b')).name).toBe('b');
  });

  it('refuses to open an invalid file, naming each problem by its path', () => {
    expect(() => parseTokenFile({ tokens: [{ name: 'x', sha256: 'abc', permissions: ['cas.read', 'root'] }, 'nope'] })).toThrow(
      /tokens\[0\]\.sha256.*tokens\[0\]\.permissions\[1\].*"root".*tokens\[1\]: expected an object/,
    );
    expect(() => parseTokenFile({ tokens: [{ name: 'x', sha256: hashToken('t') }] })).toThrow(/tokens\[0\]\.permissions: missing/);
    expect(() => parseTokenFile([])).toThrow(/"tokens" list/);
  });

  it('accepts entries without permissions when told to (worker token files)', async () => {
    const file = join(dir, 'workers.json');
    await writeFile(file, JSON.stringify({ tokens: [{ name: 'worker-1', sha256: hashToken('w1') }] }));
    await expect(TokenFileAuthenticator.open({ file, logger: silentLogger })).rejects.toThrow(/permissions: missing/);
    const auth = await TokenFileAuthenticator.open({ file, logger: silentLogger, requirePermissions: false });
    expect((await auth.authenticate('w1')).name).toBe('worker-1');
  });

  it('names the file but not its content when it cannot be read', async () => {
    await expect(TokenFileAuthenticator.open({ file: join(dir, 'missing.json'), logger: silentLogger })).rejects.toThrow(/missing\.json: ENOENT/);
  });
});

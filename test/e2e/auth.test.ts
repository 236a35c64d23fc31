/**
 * Authentication end to end with the built CLI: `bzutil token create`, `serve all --auth_tokens`,
 * clients with `--token` and BZUTIL_TOKEN, a wrong token, a token file reloaded on SIGHUP, and
 * `--print_config` of a tree with auth.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TokenCreateResult } from '../../src/commands/token/create.js';
import { runCli } from '../helpers/run-cli.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

let work: string;
const servers: ServeProcess[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-e2e-auth-'));
});

afterAll(async () => {
  for (const s of servers) await s.stop();
  rmSync(work, { recursive: true, force: true });
});

/** Not the empty blob, which the CLI knows to be present without asking. */
const MISSING = `${'a'.repeat(64)}/3`;

async function tokenCreate(name: string, permissions: string): Promise<TokenCreateResult> {
  const run = await runCli(['token', 'create', '--json', `--name=${name}`, '--instances=', `--permissions=${permissions}`]);
  if (run.exitCode !== 0) throw new Error(`token create exited ${run.exitCode}: ${run.stderr}`);
  return JSON.parse(run.stdout) as TokenCreateResult;
}

describe('bzutil token create', () => {
  it('prints the token and its entry (hash only) on two lines', async () => {
    const run = await runCli(['token', 'create', '--name=ci', '--instances=main,team/*', '--permissions=cas.read,execute']);
    expect(run.exitCode, run.stderr).toBe(0);
    const [token, entryLine] = run.stdout.trim().split('\n');
    expect(token).toMatch(/^bzt_[A-Za-z0-9_-]{43}$/);
    const entry = JSON.parse(entryLine!) as { name: string; sha256: string; instances: string[]; permissions: string[] };
    expect(entry).toMatchObject({ name: 'ci', instances: ['main', 'team/*'], permissions: ['cas.read', 'execute'] });
    expect(entryLine).not.toContain(token);
  });

  it('refuses an unknown permission as a usage error', async () => {
    const run = await runCli(['token', 'create', '--name=ci', '--instances=main', '--permissions=cas.read,root']);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain('"root"');
  });
});

describe('serve all with --auth_tokens', () => {
  it('serves clients with the right token, refuses a wrong one with UNAUTHENTICATED, and reloads the file on SIGHUP', async () => {
    const writer = await tokenCreate('writer', 'cas.read,cas.write');
    const reader = await tokenCreate('reader', 'cas.read');
    const tokenFile = join(work, 'tokens.yaml');
    await writeFile(tokenFile, JSON.stringify({ tokens: [writer.entry] }));
    const server = await startServe(
      ['all', '--in_memory', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', '--slots=1', `--work_dir=${join(work, 'w')}`, `--auth_tokens=${tokenFile}`],
      ['apiserver', 'scheduler'],
    );
    servers.push(server);
    const cas = `--cas=${server.addresses.apiserver}`;

    const anonymous = await runCli(['upload_command', cas, '--', 'echo', 'hi']);
    expect(anonymous.exitCode).not.toBe(0);
    expect(anonymous.stderr).toMatch(/Missing credentials/);

    const wrong = await runCli(['upload_command', cas, '--token=bzt_wrong-token-value', '--', 'echo', 'hi']);
    expect(wrong.exitCode).not.toBe(0);
    expect(wrong.stderr).toMatch(/UNAUTHENTICATED|not known/);
    expect(wrong.stderr).not.toContain('bzt_wrong-token-value');

    const upload = await runCli(['upload_command', cas, `--token=${writer.token}`, '--', 'echo', 'hi']);
    expect(upload.exitCode, upload.stderr).toBe(0);
    const viaEnv = await runCli(['find_missing_blobs', cas, `--digests=${MISSING}`], { env: { BZUTIL_TOKEN: writer.token } });
    expect(viaEnv.exitCode, viaEnv.stderr).toBe(0);

    // The reader is not in the file yet; after a rewrite and SIGHUP it is, and the writer is gone.
    expect((await runCli(['find_missing_blobs', cas, `--digests=${MISSING}`, `--token=${reader.token}`])).exitCode).not.toBe(0);
    await writeFile(tokenFile, `tokens:\n  - ${JSON.stringify(reader.entry)}\n`);
    server.child.kill('SIGHUP');
    let readerOk = false;
    for (let i = 0; i < 50 && !readerOk; i++) {
      readerOk = (await runCli(['find_missing_blobs', cas, `--digests=${MISSING}`, `--token=${reader.token}`])).exitCode === 0;
      if (!readerOk) await new Promise((r) => setTimeout(r, 100));
    }
    expect(readerOk, server.logs()).toBe(true);
    const revoked = await runCli(['find_missing_blobs', cas, `--digests=${MISSING}`, `--token=${writer.token}`]);
    expect(revoked.exitCode).not.toBe(0);
    const readerWrites = await runCli(['upload_command', cas, `--token=${reader.token}`, '--', 'echo', 'denied']);
    expect(readerWrites.exitCode).not.toBe(0);
    expect(readerWrites.stderr).toMatch(/cas\.write/);
    expect(server.logs()).not.toContain(writer.token);
    expect(server.logs()).not.toContain(reader.token);
  }, 300_000);

  it('--print_config shows the auth section with file names only, and redacts a password in a JWKS URL', async () => {
    const run = await runCli(['serve', 'all', '--in_memory', '--auth_tokens=/etc/bzutil/tokens.yaml', '--jwt_jwks=https://user:hunter2@idp.example/jwks.json', '--print_config']);
    expect(run.exitCode, run.stderr).toBe(0);
    const tree = JSON.parse(run.stdout) as { auth: { tokens_file: string; jwt: { jwks: string } } };
    expect(tree.auth.tokens_file).toBe('/etc/bzutil/tokens.yaml');
    expect(tree.auth.jwt.jwks).toBe('https://user:***@idp.example/jwks.json');
    expect(run.stdout).not.toContain('hunter2');
  });

  it('refuses to start with an invalid token file, naming the problem (exit 1, nothing served)', async () => {
    const bad = join(work, 'bad.json');
    await writeFile(bad, '{"tokens": [{"name": "x", "sha256": "short", "permissions": ["cas.read"]}]}');
    const run = await runCli(['serve', 'apiserver', '--in_memory', '--listen=127.0.0.1:0', '--http_listen=', `--auth_tokens=${bad}`], { timeoutMs: 30_000 });
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toMatch(/tokens\[0\]\.sha256/);
  });
});

describe('a worker port other hosts can reach', () => {
  it.each([
    ['scheduler', ['--listen=127.0.0.1:0', '--cas=localhost:1']],
    ['all', ['--in_memory', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0']],
  ])('serve %s refuses to start without worker authentication (exit 2, naming the flags)', async (role, extra) => {
    const run = await runCli(['serve', role, ...extra, '--worker_listen=0.0.0.0:0', '--http_listen='], { timeoutMs: 30_000 });
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain('scheduler.worker_listen_address: 0.0.0.0:0 is not a loopback address, so workers must authenticate');
    expect(run.stderr).toContain('--worker_tokens');
    expect(run.stdout).not.toContain('listening');
  });
});


/**
 * BuildStream 1.6 (Debian `buildstream`) as a second Remote Asset client. bst 1.6.8 keeps artifacts
 * in a REAPI CAS and names them with Remote Asset (buildstream/_artifactcache/cascache.py): it probes
 * Fetch.FetchDirectory and Push.PushDirectory with an empty request and takes INVALID_ARGUMENT as
 * "supported" (UNIMPLEMENTED sends it to its own ReferenceStorage service), pushes the artifact tree
 * through the CAS and records it with PushDirectory under `urn:fdc:buildstream.build:2020:v1:<ref>`,
 * and pulls with FetchDirectory (NOT_FOUND = not cached). Here `bst build` pushes to `serve all`,
 * then a second bst with an empty local cache pulls the artifact instead of building it.
 * The element is an `import` (no sandbox needed).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../src/lib/errors/status-error.js';
import { type asset, reapi } from '../../../src/lib/proto/index.js';
import { fetchService } from '../../../src/lib/proto/services.js';
import { startServe, type ServeProcess } from '../../helpers/serve-process.js';

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
const URN_PREFIX = 'urn:fdc:buildstream.build:2020:v1:';

function bstAvailable(): boolean {
  const found = spawnSync('sh', ['-c', 'command -v bst'], { encoding: 'utf8' }).status === 0;
  if (!found) {
    const msg = 'bst (BuildStream 1.6) is not installed: the BuildStream end-to-end test is SKIPPED (apt-get install -y buildstream to run it)';
    if (process.env.CI) throw new Error(`${msg}; CI must run it`);
    process.stderr.write(`\n*** ${msg} ***\n\n`);
  }
  return found;
}

function call<Res>(client: AnyClient, method: string, request: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    client[method]!(request, (err: Error | null, res: Res) => (err ? reject(err) : resolve(res)));
  });
}

async function expectCode(promise: Promise<unknown>, code: Code): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );
  expect(err?.code, `expected gRPC code ${code}`).toBe(code);
}

const haveBst = bstAvailable();

describe.skipIf(!haveBst)('BuildStream 1.6 against bzutil (Remote Asset + CAS)', () => {
  const root = mkdtempSync(join(tmpdir(), 'bzutil-bst-'));
  const project = join(root, 'project');
  let serve: ServeProcess;
  let fetch: AnyClient;

  /** Runs bst with its own config (local cache `cache-<name>`), XDG dirs under the test root. */
  const bst = (cache: string, args: string[]): Promise<{ code: number; output: string }> => {
    const dir = join(root, `cache-${cache}`);
    mkdirSync(dir, { recursive: true });
    const conf = join(dir, 'buildstream.conf');
    writeFileSync(
      conf,
      [
        `sourcedir: ${join(dir, 'sources')}`,
        `builddir: ${join(dir, 'build')}`,
        `artifactdir: ${join(dir, 'artifacts')}`,
        `logdir: ${join(dir, 'logs')}`,
        'scheduler:',
        '  on-error: quit',
        '  network-retries: 0',
        'artifacts:',
        `  url: http://${serve.addresses.scheduler}`,
        '  push: true',
        '',
      ].join('\n'),
    );
    const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'xdg-cache'), XDG_CONFIG_HOME: join(dir, 'xdg-config'), XDG_DATA_HOME: join(dir, 'xdg-data') };
    return new Promise((resolve, reject) => {
      const child = spawn('bst', ['--no-interactive', '--no-colors', '-c', conf, ...args], { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`bst ${args.join(' ')} timed out:\n${output.slice(-4000)}`));
      }, 240_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, output });
      });
    });
  };

  /** The artifact refs of the local cache `cache` (`<project>/<element>/<key>`) with their root digests. */
  const localRefs = (cache: string): Map<string, reapi.Digest> => {
    const heads = join(root, `cache-${cache}`, 'artifacts', 'cas', 'refs', 'heads');
    const refs = new Map<string, reapi.Digest>();
    for (const key of readdirSync(join(heads, 'test', 'hello'))) {
      refs.set(`test/hello/${key}`, reapi.Digest.decode(readFileSync(join(heads, 'test', 'hello', key))));
    }
    return refs;
  };

  beforeAll(async () => {
    mkdirSync(join(project, 'elements'), { recursive: true });
    mkdirSync(join(project, 'files', 'bin'), { recursive: true });
    writeFileSync(join(project, 'project.conf'), 'name: test\nelement-path: elements\n');
    writeFileSync(join(project, 'elements', 'hello.bst'), 'kind: import\nsources:\n- kind: local\n  path: files\n');
    writeFileSync(join(project, 'files', 'hello.txt'), 'hello from buildstream through bzutil\n');
    writeFileSync(join(project, 'files', 'bin', 'hello.sh'), '#!/bin/sh\necho hello\n', { mode: 0o755 });
    serve = await startServe(
      ['all', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', `--storage_dir=${join(root, 'storage')}`, `--work_dir=${join(root, 'work')}`, '--slots=1'],
      ['apiserver', 'scheduler'],
    );
    fetch = new (grpc.makeGenericClientConstructor(fetchService, 'Fetch'))(serve.addresses.scheduler!, grpc.credentials.createInsecure()) as unknown as AnyClient;
  }, 120_000);

  afterAll(async () => {
    fetch?.close();
    await serve?.stop();
    spawnSync('chmod', ['-R', 'u+w', root]);
    rmSync(root, { recursive: true, force: true });
  }, 60_000);

  it('answers the probes bst makes: an empty URI list INVALID_ARGUMENT, a miss NOT_FOUND', async () => {
    await expectCode(call(fetch, 'fetchDirectory', {}), Code.INVALID_ARGUMENT);
    await expectCode(call(fetch, 'fetchDirectory', { uris: [`${URN_PREFIX}test/hello/${'0'.repeat(64)}`] }), Code.NOT_FOUND);
  });

  it('pushes the built artifact to bzutil, and a fresh local cache pulls it instead of building', async () => {
    const first = await bst('first', ['build', 'hello.bst']);
    expect(first.code, `first bst build failed:\n${first.output.slice(-4000)}`).toBe(0);
    expect(first.output).toMatch(/Build Queue:\s+processed 1/);
    expect(first.output).toMatch(/Pushed artifact \w+ -> http:\/\/127\.0\.0\.1:\d+/);
    expect(first.output).not.toContain('does not implement');

    // Every ref bst pushed is recorded in bzutil's index with the tree bst built.
    const pushed = localRefs('first');
    expect(pushed.size).toBeGreaterThan(0);
    for (const [ref, digest] of pushed) {
      const res = await call<asset.FetchDirectoryResponse>(fetch, 'fetchDirectory', { uris: [URN_PREFIX + ref] });
      expect(res.rootDirectoryDigest?.hash, ref).toBe(digest.hash);
    }

    const second = await bst('second', ['build', 'hello.bst']);
    expect(second.code, `second bst build failed:\n${second.output.slice(-4000)}`).toBe(0);
    expect(second.output).toMatch(/Pull Queue:\s+processed 1/);
    expect(second.output).toMatch(/Build Queue:\s+processed 0, skipped 1/);
    expect(localRefs('second')).toEqual(pushed);

    // The pulled artifact checks out with the files (and executable bit) of the build.
    const out = join(root, 'checkout');
    const checkout = await bst('second', ['checkout', 'hello.bst', out]);
    expect(checkout.code, checkout.output.slice(-4000)).toBe(0);
    expect(readFileSync(join(out, 'hello.txt'), 'utf8')).toBe('hello from buildstream through bzutil\n');
    expect(statSync(join(out, 'bin', 'hello.sh')).mode & 0o100).toBe(0o100);
    expect(spawnSync(join(out, 'bin', 'hello.sh'), { encoding: 'utf8' }).stdout).toBe('hello\n');
  }, 600_000);
});

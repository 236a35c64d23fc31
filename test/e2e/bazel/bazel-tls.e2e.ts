/**
 * Issue 11 with a real client: Debian's Bazel 4.2.3 builds remotely against `bzutil serve all` over
 * TLS (`grpcs://` + `--tls_certificate`), over mTLS (`--tls_client_certificate/--tls_client_key`),
 * and with a bearer token (`--remote_header=Authorization=Bearer ...`) against `--auth_tokens`, each
 * with outputs byte-identical to a local build; a client without its certificate and a build with a
 * wrong token fail with a message that says why. The certificates come from a throwaway CA made at
 * test time (EC P-256, server SANs localhost and 127.0.0.1), the token from `bzutil token create`
 * as the README shows. One output base serves every build (same startup options; `bazel clean`
 * between them, and a fresh server each time, so every build really executes remotely), on a
 * small target set: genrules, and a C++ binary compiled and linked remotely.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/run-cli.js';
import { startServe, type ServeProcess } from '../../helpers/serve-process.js';
import { createThrowawayPki, type ThrowawayPki } from '../../helpers/throwaway-ca.js';
import { bazelAvailable, collectOutputs, COMMON_FLAGS, copyWorkspace, processSummary, runBazel, tcnativeStartupOptions, type BazelResult, type Workspace } from './bazel-harness.js';

const BAZEL_TIMEOUT_MS = 900_000;
const TARGETS = ['//gen/...', '//app:fib'];
const OUTPUTS = ['app/fib', 'gen/greeting.txt', 'gen/hello.sh', 'gen/combined.txt'];

const scratch = mkdtempSync(join(tmpdir(), 'bzutil-bazel-tls-'));
const startupOptions = bazelAvailable() ? tcnativeStartupOptions(join(scratch, 'jni')) : undefined;

describe.skipIf(!startupOptions)('Bazel 4.2.3 against bzutil over TLS, mTLS and bearer tokens', () => {
  let ws: Workspace;
  let pki: ThrowawayPki;
  let localOutputs: Record<string, string>;
  let server: ServeProcess | undefined;
  const ob = () => join(ws.root, 'ob');

  const bazel = (args: string[]) => runBazel(ws, ob(), args, BAZEL_TIMEOUT_MS);
  const expectSuccess = (result: BazelResult, what: string) => expect(result.code, `${what} failed:\n${result.output.slice(-6000)}`).toBe(0);

  /** A fresh `serve all` (its own storage, so nothing is a cache hit) with `extra` flags. */
  const serve = async (label: string, extra: string[]) => {
    await server?.stop();
    const dir = join(scratch, label);
    server = await startServe(
      ['all', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', `--storage_dir=${join(dir, 'storage')}`, `--work_dir=${join(dir, 'work')}`, '--slots=2', '--tls_cert', pki.serverCert, '--tls_key', pki.serverKey, ...extra],
      ['apiserver', 'scheduler'],
    );
    // The certificate names localhost (and 127.0.0.1): Bazel checks the name it dials.
    return `grpcs://localhost:${server.addresses.scheduler!.split(':').at(-1)}`;
  };

  /** A remote build of TARGETS after `bazel clean`, with `flags` added. */
  const remoteBuild = async (remote: string, flags: string[]) => {
    expectSuccess(await bazel(['clean']), 'clean');
    return bazel(['build', ...COMMON_FLAGS, `--remote_executor=${remote}`, `--tls_certificate=${pki.caCert}`, '--remote_local_fallback=false', ...flags, ...TARGETS]);
  };

  const expectRemoteAndIdentical = async (result: BazelResult, what: string) => {
    expectSuccess(result, what);
    const summary = processSummary(result.output);
    expect(summary.remote, `expected remote processes in ${JSON.stringify(summary)}`).toBeGreaterThanOrEqual(5);
    for (const local of ['linux-sandbox', 'local', 'processwrapper-sandbox', 'remote cache hit']) expect(summary[local] ?? 0, `${local} in ${JSON.stringify(summary)}`).toBe(0);
    expect(await collectOutputs(ws, ob(), OUTPUTS)).toEqual(localOutputs);
  };

  beforeAll(async () => {
    pki = createThrowawayPki();
    ws = copyWorkspace('tls', { startupOptions });
    expectSuccess(await bazel(['build', ...COMMON_FLAGS, ...TARGETS]), 'local build');
    localOutputs = await collectOutputs(ws, ob(), OUTPUTS);
  }, BAZEL_TIMEOUT_MS);

  afterAll(async () => {
    await server?.stop();
    await ws?.cleanup();
    rmSync(scratch, { recursive: true, force: true });
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  }, 120_000);

  it('builds over TLS (grpcs:// and --tls_certificate) with outputs identical to a local build', async () => {
    const remote = await serve('tls', []);
    await expectRemoteAndIdentical(await remoteBuild(remote, []), 'TLS build');
  }, BAZEL_TIMEOUT_MS);

  it('builds over mTLS with a client certificate, and refuses Bazel without one in the handshake', async () => {
    const remote = await serve('mtls', ['--tls_client_ca', pki.caCert]);
    const refused = await remoteBuild(remote, []);
    expect(refused.code, refused.output.slice(-3000)).not.toBe(0);
    expect(refused.output).toMatch(/Failed to query remote execution capabilities: .*handshake failure/);

    const result = await remoteBuild(remote, [`--tls_client_certificate=${pki.clientCert}`, `--tls_client_key=${pki.clientKey}`]);
    await expectRemoteAndIdentical(result, 'mTLS build');
  }, BAZEL_TIMEOUT_MS);

  describe('with --auth_tokens', () => {
    let remote: string;
    let token: string;

    beforeAll(async () => {
      // As the README does it: line 1 is the token, line 2 its entry for the token file.
      const created = await runCli(['token', 'create', '--name', 'ci', '--instances', '', '--permissions', 'cas.read,cas.write,ac.read,execute,operations.read']);
      expect(created.exitCode, created.stderr).toBe(0);
      const [line1, line2] = created.stdout.trim().split('\n');
      token = line1!;
      const tokensFile = join(scratch, 'tokens.json');
      writeFileSync(tokensFile, `{"tokens": [${line2}]}`);
      remote = await serve('auth', ['--auth_tokens', tokensFile]);
    }, 60_000);

    it('builds with --remote_header=Authorization=Bearer <token>, outputs identical to a local build', async () => {
      await expectRemoteAndIdentical(await remoteBuild(remote, [`--remote_header=Authorization=Bearer ${token}`]), 'token build');
    }, BAZEL_TIMEOUT_MS);

    it('fails the build with UNAUTHENTICATED for a wrong token, and for none', async () => {
      const wrong = await remoteBuild(remote, [`--remote_header=Authorization=Bearer ${token.slice(0, -4)}xxxx`]);
      expect(wrong.code, wrong.output.slice(-3000)).not.toBe(0);
      expect(wrong.output).toMatch(/UNAUTHENTICATED: Invalid credentials: the token is not known/);
      expect(wrong.output).toContain('FAILED: Build did NOT complete successfully');

      const none = await remoteBuild(remote, []);
      expect(none.code, none.output.slice(-3000)).not.toBe(0);
      expect(none.output).toMatch(/UNAUTHENTICATED: Missing credentials: send the header "authorization: Bearer <token>"/);
    }, BAZEL_TIMEOUT_MS);
  });
});

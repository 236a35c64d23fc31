/**
 * `serve all --tls_cert --tls_key [--tls_client_ca]` and the client flags `--tls_ca`, `--tls_cert`,
 * `--tls_key` and `grpcs://`, with the built CLI and a throwaway CA made at test time.
 */
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';
import { createThrowawayPki, type ThrowawayPki } from '../helpers/throwaway-ca.js';

let pki: ThrowawayPki;
let work: string;
const servers: ServeProcess[] = [];

beforeAll(async () => {
  pki = createThrowawayPki();
  work = await mkdtemp(join(tmpdir(), 'bzutil-e2e-tls-'));
}, 60_000);

afterAll(async () => {
  for (const s of servers) await s.stop();
  rmSync(pki.dir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

async function serveAll(extra: string[], label: string): Promise<ServeProcess> {
  const server = await startServe(
    ['all', '--in_memory', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', '--slots=1', `--work_dir=${join(work, label)}`, `--tls_cert=${pki.serverCert}`, `--tls_key=${pki.serverKey}`, ...extra],
    ['apiserver', 'scheduler'],
  );
  servers.push(server);
  return server;
}

const EMPTY = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0';

function portOf(address: string): string {
  return address.slice(address.lastIndexOf(':') + 1);
}

describe('TLS between the CLI and serve all', () => {
  it('serves the CAS (grpcs://) and the scheduler (--tls_ca alone turns TLS on) to a client trusting the CA; a plaintext client is refused', async () => {
    const server = await serveAll([], 'tls');
    const cas = `grpcs://localhost:${portOf(server.addresses.apiserver!)}`;
    const upload = await runCli(['upload_command', `--cas=${cas}`, `--tls_ca=${pki.caCert}`, '--', 'echo', 'over-tls']);
    expect(upload.exitCode, upload.stderr).toBe(0);
    expect(upload.stdout.trim()).toMatch(/^[0-9a-f]{64}\/\d+$/);
    const list = await runCli(['list_operations', `--scheduler=localhost:${portOf(server.addresses.scheduler!)}`, `--tls_ca=${pki.caCert}`]);
    expect(list.exitCode, list.stderr).toBe(0);
    const plain = await runCli(['find_missing_blobs', `--cas=localhost:${portOf(server.addresses.apiserver!)}`, '--rpc_timeout=3s', `--digests=${EMPTY}`]);
    expect(plain.exitCode).toBe(5);
  }, 120_000);

  it('with --tls_client_ca, serves only clients presenting a certificate signed by it', async () => {
    const server = await serveAll([`--tls_client_ca=${pki.caCert}`], 'mtls');
    const cas = `grpcs://localhost:${portOf(server.addresses.apiserver!)}`;
    const without = await runCli(['find_missing_blobs', `--cas=${cas}`, `--tls_ca=${pki.caCert}`, '--rpc_timeout=3s', `--digests=${EMPTY}`]);
    expect(without.exitCode).toBe(5);
    const withCert = await runCli(['find_missing_blobs', `--cas=${cas}`, `--tls_ca=${pki.caCert}`, `--tls_cert=${pki.clientCert}`, `--tls_key=${pki.clientKey}`, `--digests=${EMPTY}`]);
    expect(withCert.exitCode, withCert.stderr).toBe(0);
  }, 120_000);
});

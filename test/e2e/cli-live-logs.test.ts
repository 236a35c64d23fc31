/**
 * `bzutil tail` and `execute --wait --follow` through the built binary against serve all in this
 * process: the action's stdout goes to the command's stdout and its stderr to stderr, live (tail
 * started while the action runs gets the first line before the action ends); an unknown operation
 * exits 4; --follow without --wait is a usage error (2).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TailResult } from '../../src/commands/tail.js';
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../src/lib/client/connection.js';
import { encodeWithDigest } from '../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../src/lib/proto/index.js';
import type { ServeAll } from '../../src/server/serve-all.js';
import { startServeAllInProcess } from '../helpers/serve-all-in-process.js';
import { runCli } from '../helpers/run-cli.js';

describe('live logs in the CLI', () => {
  let work: string;
  let all: ServeAll;
  let stop: (() => Promise<void>) | undefined;
  let connection: RemoteConnection;
  let scheduler: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'bzutil-cli-logs-'));
    ({ all, close: stop } = await startServeAllInProcess(work));
    connection = new RemoteConnection(all.apiserver.address);
    scheduler = `--scheduler=${all.scheduler.address}`;
  });
  afterAll(async () => {
    connection?.close();
    await stop?.();
    rmSync(work, { recursive: true, force: true });
  });

  const upload = async (script: string): Promise<string> => {
    const cas = new CasClient(connection);
    const command = encodeWithDigest(reapi.Command, { arguments: ['sh', '-c', script], environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }] });
    const root = encodeWithDigest(reapi.Directory, {});
    const action = encodeWithDigest(reapi.Action, { commandDigest: command.digest.toProto(), inputRootDigest: root.digest.toProto(), doNotCache: true });
    for (const blob of [command, root, action]) await cas.putBlob(blob.digest, blob.bytes);
    return `${action.digest.hash}/${action.digest.sizeBytes}`;
  };

  it('execute --wait --follow prints stdout and stderr, then the result', async () => {
    const action = await upload('echo out-line; echo err-line >&2; sleep 0.5; echo last');
    const run = await runCli(['execute', scheduler, `--action=${action}`, '--wait', '--follow']);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout.startsWith('out-line\nlast\n')).toBe(true);
    expect(run.stdout).toContain('Operation: ');
    expect(run.stderr).toContain('err-line\n');
  });

  it('tail prints a running action live and ends with it', async () => {
    const action = await upload('echo started; sleep 2; echo finished');
    const started = await runCli(['execute', scheduler, `--action=${action}`, '--json']);
    expect(started.exitCode, started.stderr).toBe(0);
    const name = (JSON.parse(started.stdout) as { name: string }).name;
    const t0 = Date.now();
    const tail = await runCli(['tail', scheduler, `--name=${name}`]);
    expect(tail.exitCode, tail.stderr).toBe(0);
    expect(tail.stdout).toBe('started\nfinished\n');
    expect(Date.now() - t0).toBeGreaterThan(500); // it waited for the action to end
    // Again after the end: the final output, and --json counts the bytes.
    const again = await runCli(['tail', scheduler, `--name=${name.split('/').pop()}`, '--json']);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout) as TailResult).toMatchObject({ stdoutBytes: 'started\nfinished\n'.length, stderrBytes: 0 });
  });

  it('tail of an unknown operation exits 4; --follow without --wait exits 2', async () => {
    const unknown = await runCli(['tail', scheduler, `--name=operations/${randomUUID()}`]);
    expect(unknown.exitCode).toBe(4);
    expect((await runCli(['execute', scheduler, '--action=' + 'a'.repeat(64) + '/1', '--follow'])).exitCode).toBe(2);
  });
});

/**
 * The CLI in terminals, pipes and CI, through the built binary: help and `help <command>`, shell
 * completion, NO_COLOR and FORCE_COLOR, a server that accepts connections and never answers (the
 * connect deadline names the address and the time spent, and is bounded), a digest function the
 * server does not offer, bare operation UUIDs on every operation command, and errors printed once.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { type Server, type Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli.js';
import { type ServeProcess, binPath, startServe } from '../helpers/serve-process.js';

/** util-linux `script` gives the CLI a real pty whose size we set with stty. */
const hasScript = (() => {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!hasScript) console.warn('cli-ux.test.ts: `script` (util-linux) is absent: the pty progress tests are SKIPPED');

/** Runs `bzutil <args>` on a pty of `columns` columns; resolves with everything it wrote, bounded in time. */
function runOnPty(columns: number, args: string[]): Promise<{ exitCode: number; output: string }> {
  const quoted = [process.execPath, binPath, ...args].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
  const env = { ...process.env, CI: undefined, TERM: 'xterm', NO_COLOR: undefined, FORCE_COLOR: undefined, BZUTIL_CAS_ADDR: '', BZUTIL_SCHEDULER_ADDR: '' };
  return new Promise((resolve) => {
    execFile('script', ['-qec', `stty cols ${columns} rows 24; exec ${quoted}`, '/dev/null'], { env, timeout: 30_000, maxBuffer: 1024 * 1024, encoding: 'utf8' }, (err, stdout) => {
      const code = (err as { code?: unknown } | null)?.code;
      resolve({ exitCode: err ? (typeof code === 'number' ? code : -1) : 0, output: stdout });
    });
  });
}

const CLIENT_COMMANDS = [
  'batch_download',
  'batch_upload',
  'cancel_operation',
  'diff_actions',
  'download',
  'execute',
  'find_missing_blobs',
  'get_operation',
  'get_outputs',
  'list_operations',
  'reproduce',
  'tail',
  'upload_action',
  'upload_command',
  'upload_dir',
  'wait_execution',
];
const ANSI = /\u001b\[/;
const UUID = 'b53b5e99-0162-43e1-6cbd-e44f8e6d1566';

let work: string;
let serve: ServeProcess;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-e2e-ux-'));
  // Servers offer every digest function by default; this one is restricted to SHA-256 in its config
  // tree, so that a client asking for another is refused.
  const config = join(work, 'bzutil.yaml');
  await writeFile(config, 'apiserver:\n  digest_functions: [sha256]\nscheduler:\n  digest_functions: [sha256]\n');
  serve = await startServe(
    ['all', `--config=${config}`, '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', '--in_memory', `--work_dir=${join(work, 'work')}`, '--slots=1'],
    ['apiserver', 'scheduler'],
  );
});
afterAll(async () => {
  await serve?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('help and completion', () => {
  it('lists every client command in `bzutil help`', async () => {
    const run = await runCli(['help']);
    expect(run.exitCode).toBe(0);
    for (const id of CLIENT_COMMANDS) expect(run.stdout).toMatch(new RegExp(`^  ${id} `, 'm'));
    expect(run.stdout).toMatch(/^ {2}autocomplete /m);
  });

  // One test per command: each `help` run starts a node process, and under a loaded machine a
  // single test over every command outran its timeout.
  it.each(CLIENT_COMMANDS)('prints `help %s` without @default artefacts', async (id) => {
    const run = await runCli(['help', id]);
    expect(run.exitCode, id).toBe(0);
    expect(run.stdout, id).toContain(`$ bzutil ${id}`);
    expect(run.stdout, id).not.toContain('@default');
    expect(run.stdout, id).toContain('--rpc_timeout');
  });

  it('gives shell completion instructions', async () => {
    const run = await runCli(['autocomplete', 'bash'], { env: { XDG_CACHE_HOME: join(work, 'cache'), HOME: work } });
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain('bzutil autocomplete');
  });
});

describe('errors', () => {
  it('prints a usage error once, with one See: line, exit 2', async () => {
    // NODE_ENV as users have it: under vitest's NODE_ENV=test oclif adds a developer warning.
    const run = await runCli(['get_operation', '--name=x', '--rpc_timeout=soon', '--scheduler=127.0.0.1:1'], { env: { NODE_ENV: undefined } });
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toBe('Error: Invalid --rpc_timeout: Invalid duration "soon": use a number with ms, s, m or h (e.g. 30s)\nSee: bzutil get_operation --help\n');
    const missing = await runCli(['upload_dir', join(work, 'no-such-dir'), '--cas=127.0.0.1:1']);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr.split('\n')[0]).toBe(`Error: Failed to read the directory to upload ${JSON.stringify(join(work, 'no-such-dir'))}: it does not exist`);
  });

  it('honours NO_COLOR and FORCE_COLOR', async () => {
    const args = ['get_operation', '--name=x', '--scheduler=127.0.0.1:1'];
    expect((await runCli(args, { env: { FORCE_COLOR: '1', NO_COLOR: undefined } })).stderr).toMatch(ANSI);
    expect((await runCli(args, { env: { FORCE_COLOR: undefined, NO_COLOR: '1' } })).stderr).not.toMatch(ANSI);
  });
});

describe('deadlines', () => {
  let hung: Server;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    // Accepts TCP connections and never says a word: no HTTP/2 settings, no answer.
    hung = createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => hung.close(resolve));
  });

  it('gives up on a server that never answers after the connect deadline, naming the address and the time, exit 5', async () => {
    const address = `127.0.0.1:${(hung.address() as { port: number }).port}`;
    const started = Date.now();
    const run = await runCli(['get_operation', `--name=${UUID}`, `--scheduler=${address}`, '--rpc_timeout=1s'], { timeoutMs: 30_000 });
    const elapsedMs = Date.now() - started;
    expect(run.exitCode).toBe(5);
    expect(run.stderr).toMatch(new RegExp(`^Error: Failed to reach the scheduler at ${address.replaceAll('.', '\\.')}: no answer within 1\\.0s \\(gave up after [12]\\.\\ds\\)\\n$`));
    // One attempt, not five retries: well under the old 51 s (process start-up included).
    expect(elapsedMs).toBeLessThan(15_000);

    const cas = await runCli(['find_missing_blobs', `--digests=${'0'.repeat(64)}/1`, `--cas=${address}`, '--rpc_timeout=1', '--json'], { timeoutMs: 30_000 });
    expect(cas.exitCode).toBe(5);
    expect(JSON.parse(cas.stdout)).toMatchObject({ status: 5, code: 'DEADLINE_EXCEEDED' });
  });
});

describe('progress on a terminal', () => {
  it.skipIf(!hasScript)('draws nothing on a 0-column pty (where ora used to loop forever) and blobs, bytes and rate on a sane one', async () => {
    const dir = join(work, 'pty-dir');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'a.txt'), 'a'.repeat(3000));
    const cas = `--cas=${serve.addresses.apiserver}`;

    const narrow = await runOnPty(0, ['upload_dir', cas, dir]);
    expect(narrow.exitCode).toBe(0);
    expect(narrow.output).toMatch(/^[0-9a-f]{64}\/\d+\r?\n$/);

    await writeFile(join(dir, 'b.txt'), 'b'.repeat(5000));
    const wide = await runOnPty(80, ['upload_dir', cas, dir]);
    expect(wide.exitCode).toBe(0);
    expect(wide.output).toMatch(/Uploaded 2 blobs, [\d.]+ KiB \([\d.]+ [KMG]?i?B\/s\)/);
    expect(wide.output).toMatch(/\n[0-9a-f]{64}\/\d+\r?\n/);
  });
});

describe('against serve all', () => {
  it('refuses a digest function the server does not offer before sending anything (exit 2)', async () => {
    const run = await runCli(['find_missing_blobs', `--cas=${serve.addresses.apiserver}`, `--digests=${'0'.repeat(40)}/1`, '--digest_function=sha1']);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain(`Error: Invalid --digest_function sha1: the CAS at ${serve.addresses.apiserver} supports sha256\n`);
  });

  it('takes a bare UUID on every operation command and resolves it to operations/<uuid> (exit 4 when unknown)', async () => {
    for (const id of ['get_operation', 'wait_execution', 'cancel_operation']) {
      const run = await runCli([id, `--scheduler=${serve.addresses.scheduler}`, `--name=${UUID}`, '--json']);
      expect(run.exitCode, id).toBe(4);
      expect(JSON.parse(run.stdout), id).toMatchObject({ status: 4, code: 'NOT_FOUND' });
      expect(JSON.parse(run.stdout).message, id).toContain(`operations/${UUID}`);
    }
  });
});

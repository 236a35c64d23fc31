/**
 * Every example in the help of every client command runs as written against `serve all`, with its
 * placeholders (`<hash>/<size>`, `operations/5c1e2d4a-...`) replaced by real digests and operation
 * names, in a directory holding the `./inputs`, `./src` and `./blobs` the examples name, and `bzutil`
 * on PATH. Examples that point at another server (`--cas=cas.example:12100`, `--scheduler=buildfarm:9099`)
 * are the only ones not run, and are counted so that the skip cannot grow silently.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCliJson } from '../helpers/run-cli.js';
import { type ServeProcess, binPath, repoRoot } from '../helpers/serve-process.js';
import { startServe } from '../helpers/serve-process.js';

const commandsDir = join(repoRoot, 'src/commands');
const ids = readdirSync(commandsDir).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3));

let serve: ServeProcess;
let work: string;
let binDir: string;
const real = { action: '', command: '', blob: '', dir: '', operation: '', uuid: '' };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-e2e-examples-'));
  serve = await startServe(['all', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', '--in_memory', `--work_dir=${join(work, 'work')}`, '--slots=2'], ['apiserver', 'scheduler']);
  binDir = join(work, 'bin');
  await mkdir(binDir);
  await writeFile(join(binDir, 'bzutil'), `#!/bin/sh\nexec '${process.execPath}' '${binPath}' "$@"\n`);
  await chmod(join(binDir, 'bzutil'), 0o755);
  const cas = `--cas=${serve.addresses.apiserver}`;
  real.command = (await runCliJson<{ digest: string }>(['upload_command', cas, '--', 'true'])).digest;
  real.blob = real.command;
  await mkdir(join(work, 'tree'));
  await writeFile(join(work, 'tree/a.txt'), 'a\n');
  real.dir = (await runCliJson<{ digest: string }>(['upload_dir', cas, join(work, 'tree')])).digest;
  real.action = (await runCliJson<{ digest: string }>(['upload_action', cas, `--command=${real.command}`, `--input_root=${real.dir}`])).digest;
  // Run it once so that the action cache has its result (get_outputs --action).
  real.operation = (await runCliJson<{ name: string }>(['execute', `--scheduler=${serve.addresses.scheduler}`, `--action=${real.action}`, '--wait'])).name;
  real.uuid = real.operation.replace(/^operations\//, '');
});
afterAll(async () => {
  await serve?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** The example with the command's id and real values in place of its placeholders. */
function render(id: string, example: string): string {
  const digest = id === 'upload_action' ? real.command : id === 'download' && example.includes('--tree') ? real.dir : ['find_missing_blobs', 'batch_download', 'download'].includes(id) ? real.blob : real.action;
  return example
    .replaceAll('<%= config.bin %>', 'bzutil')
    .replaceAll('<%= command.id %>', id)
    .replaceAll('<hash>/<size>', digest)
    .replace(/operations\/5c1e[0-9a-f-]*\.\.\./g, real.operation)
    .replace(/5c1e[0-9a-f-]*\.\.\./g, real.uuid);
}

function runShell(line: string, cwd: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const env = { ...process.env, PATH: `${binDir}:${process.env.PATH}`, BZUTIL_CAS_ADDR: serve.addresses.apiserver!, BZUTIL_SCHEDULER_ADDR: serve.addresses.scheduler! };
  return new Promise((resolve) => {
    execFile('bash', ['-o', 'pipefail', '-c', line], { cwd, env, timeout: 60_000, encoding: 'utf8', maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = (err as { code?: unknown } | null)?.code;
      resolve({ exitCode: err ? (typeof code === 'number' ? code : -1) : 0, stdout, stderr });
    });
  });
}

/** Every example of every client command, loaded from the command classes. */
const examples: { id: string; text: string }[] = [];
for (const id of ids) {
  const cmd = ((await import(join(commandsDir, `${id}.ts`))) as { default: { examples?: (string | { command: string })[] } }).default;
  for (const example of cmd.examples ?? []) examples.push({ id, text: typeof example === 'string' ? example : example.command });
}
const NAMES_ANOTHER_HOST = /--(cas|scheduler|cas_addr|grpc_addr)=/;
const runnable = examples.filter((e) => !NAMES_ANOTHER_HOST.test(e.text));

async function exampleDir(id: string): Promise<string> {
  const cwd = await mkdtemp(join(work, `${id}-`));
  await mkdir(join(cwd, 'inputs'));
  await writeFile(join(cwd, 'inputs/in.txt'), 'in\n');
  await mkdir(join(cwd, 'src'));
  await writeFile(join(cwd, 'src/x.c'), 'int x;\n');
  await writeFile(join(cwd, 'src/x.h'), 'extern int x;\n');
  await mkdir(join(cwd, 'blobs'));
  await writeFile(join(cwd, 'blobs/b.txt'), 'b\n');
  return cwd;
}

describe('help examples', () => {
  it('are all run except the few that name another host', () => {
    expect(runnable.length).toBeGreaterThanOrEqual(25);
    expect(examples.filter((e) => NAMES_ANOTHER_HOST.test(e.text)).map((e) => e.id).sort()).toEqual(['diff_actions', 'execute', 'get_outputs', 'upload_dir']);
  });

  it.each(runnable)('$id: $text', async ({ id, text }) => {
    const line = render(id, text);
    const run = await runShell(line, await exampleDir(id));
    expect(run.exitCode, `${line}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`).toBe(0);
  });
});

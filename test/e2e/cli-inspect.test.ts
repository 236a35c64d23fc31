/**
 * `diff_actions` and `reproduce` through the built binary against `serve all --in_memory` on ports 0:
 * two actions that differ in argv, env, platform, timeout, do_not_cache and two input files are
 * explained field by field and path by path; an action's inputs are materialised locally and its
 * command printed (--print) or run with exactly its environment and working directory.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiffActionsResult } from '../../src/commands/diff_actions.js';
import type { ReproduceCommandResult } from '../../src/commands/reproduce.js';
import { runCli, runCliJson } from '../helpers/run-cli.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

let serve: ServeProcess;
let work: string;
let cas: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-e2e-inspect-'));
  serve = await startServe(
    ['all', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', '--in_memory', `--work_dir=${join(work, 'work')}`, '--slots=1'],
    ['apiserver', 'scheduler'],
  );
  cas = `--cas=${serve.addresses.apiserver}`;
});
afterAll(async () => {
  await serve?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function uploadDir(name: string, files: Record<string, string>): Promise<string> {
  const root = join(work, name);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return (await runCliJson<{ digest: string }>(['upload_dir', cas, root])).digest;
}

async function uploadAction(commandArgs: string[], actionArgs: string[]): Promise<string> {
  const command = await runCliJson<{ digest: string }>(['upload_command', cas, ...commandArgs]);
  return (await runCliJson<{ digest: string }>(['upload_action', cas, `--command=${command.digest}`, ...actionArgs])).digest;
}

describe('diff_actions', () => {
  it('lists each differing field and input path with both values, and nothing that is the same', async () => {
    const rootA = await uploadDir('a', { 'a.txt': 'one\n', 'same/s.txt': 'same\n', 'gone.txt': 'x' });
    const rootB = await uploadDir('b', { 'a.txt': 'two\n', 'same/s.txt': 'same\n', 'new.txt': 'y' });
    const left = await uploadAction(['--env', 'X=1,2', '--env', 'KEEP=k', '--platform_props', 'OSFamily=linux', '--', 'cat', 'a.txt'], [`--input_root=${rootA}`, '--timeout=60']);
    const right = await uploadAction(['--env', 'X=3', '--env', 'KEEP=k', '--', 'cat', 'a.txt', 'new.txt'], [`--input_root=${rootB}`, '--no_cache']);

    const diff = await runCliJson<DiffActionsResult>(['diff_actions', cas, left, right]);
    expect(diff.identical).toBe(false);
    expect(diff.fields).toEqual([
      { field: 'argv', left: '["cat","a.txt"]', right: '["cat","a.txt","new.txt"]' },
      { field: 'env X', left: '1,2', right: '3' },
      { field: 'platform OSFamily', left: 'linux' },
      { field: 'timeout', left: '60s' },
      { field: 'do_not_cache', left: 'false', right: 'true' },
    ]);
    expect(diff.inputs.map((i) => i.path)).toEqual(['a.txt', 'gone.txt', 'new.txt']);
    const a = diff.inputs[0]!;
    expect(a.left?.digest).toMatch(/^[0-9a-f]{64}\/4$/);
    expect(a.right?.digest).toMatch(/^[0-9a-f]{64}\/4$/);
    expect(a.left?.digest).not.toBe(a.right?.digest);
    expect(diff.inputs[1]).toMatchObject({ path: 'gone.txt', left: { kind: 'file' } });
    expect(diff.inputs[1]).not.toHaveProperty('right');

    const human = await runCli(['diff_actions', cas, left, right]);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain('  env X: 1,2 -> 3\n');
    expect(human.stdout).toContain(`  input a.txt: ${a.left!.digest} -> ${a.right!.digest}\n`);
    expect(human.stdout).toContain('  platform OSFamily: linux -> (unset)\n');
    expect(human.stdout).not.toContain('same/');

    const same = await runCliJson<DiffActionsResult>(['diff_actions', cas, left, left]);
    expect(same).toMatchObject({ identical: true, fields: [], inputs: [] });
  });

  it('fails with exit code 4 when an action is not in the CAS, and 2 for a malformed digest', async () => {
    const absent = `${'0'.repeat(64)}/10`;
    const run = await runCli(['diff_actions', cas, absent, absent.replace('/10', '/11')]);
    expect(run.exitCode).toBe(4);
    expect(run.stderr).toMatch(/^Error: Failed to read the Action [0-9]{64}\/1[01]: the CAS does not have it\n$/);
    expect((await runCli(['diff_actions', cas, 'nope', absent])).exitCode).toBe(2);
  });
});

describe('reproduce', () => {
  it('prints the exact command line after materialising the inputs and output directories', async () => {
    const root = await uploadDir('r', { 'in/data.txt': 'data\n' });
    const action = await uploadAction(
      ['--env', 'GREETING=hello, world', '--env', 'PATH=/usr/bin:/bin', '--working_dir=in', '--output_files=out/result.txt', '--', 'sh', '-c', 'cat data.txt > out/result.txt; echo "$GREETING"; pwd'],
      [`--input_root=${root}`],
    );
    const dir = join(work, 'repro-print');
    const printed = await runCli(['reproduce', cas, `--action=${action}`, `--dir=${dir}`, '--print']);
    expect(printed.exitCode).toBe(0);
    expect(printed.stdout).toBe(`cd ${join(dir, 'in')} && env -i 'GREETING=hello, world' PATH=/usr/bin:/bin sh -c 'cat data.txt > out/result.txt; echo "$GREETING"; pwd'\n`);
    expect(await readFile(join(dir, 'in/data.txt'), 'utf8')).toBe('data\n');
    expect((await stat(join(dir, 'in/out'))).isDirectory()).toBe(true);

    // Run it: the command sees only its own environment, in its working directory.
    const runDir = join(work, 'repro-run');
    const ran = await runCli(['reproduce', cas, `--action=${action}`, `--dir=${runDir}`]);
    expect(ran.exitCode).toBe(0);
    expect(ran.stdout).toBe(`hello, world\n${join(runDir, 'in')}\n`);
    expect(ran.stderr).toBe(`Inputs in ${runDir}\n`);
    expect(await readFile(join(runDir, 'in/out/result.txt'), 'utf8')).toBe('data\n');

    // --dir must be empty.
    const again = await runCli(['reproduce', cas, `--action=${action}`, `--dir=${runDir}`]);
    expect(again.exitCode).toBe(2);
  });

  it('reports the result as JSON and fails with exit code 1 when the command fails', async () => {
    const ok = await uploadAction(['--env', 'ONLY=this', '--', 'sh', '-c', 'env'], []);
    const result = await runCliJson<ReproduceCommandResult>(['reproduce', cas, `--action=${ok}`, `--dir=${join(work, 'repro-json')}`]);
    expect(result).toMatchObject({ actionDigest: ok, argv: ['sh', '-c', 'env'], env: { ONLY: 'this' }, exitCode: 0 });

    const failing = await uploadAction(['--', 'sh', '-c', 'exit 3'], []);
    const run = await runCli(['reproduce', cas, `--action=${failing}`, `--dir=${join(work, 'repro-fail')}`]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('the command exited with code 3');
  });
});

/**
 * `bzutil serve … --config FILE`: the committed example starts exactly what the flag-less command
 * starts, and a bad file exits 2 naming the key without starting anything. Runs the built CLI with a
 * private HOME, so that the default paths (~/.cache/bzutil/...) are the example's and are ours.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli.js';
import { repoRoot, startServe } from '../helpers/serve-process.js';
import { bwrapAvailable } from '../../src/lib/worker/sandbox-command.js';

const example = path.join(repoRoot, 'examples/serve-all.yaml');

describe('serve --config', () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-home-'));
    env = { HOME: home, XDG_CACHE_HOME: '' };
  });
  afterAll(async () => {
    await fs.rm(home, { recursive: true, force: true });
  });

  it('prints the same effective tree for the example file as for no flags at all', async () => {
    const fromFile = await runCli(['serve', 'all', '--config', example, '--print_config'], { env });
    const fromDefaults = await runCli(['serve', 'all', '--print_config'], { env });
    expect(fromFile.exitCode, fromFile.stderr).toBe(0);
    expect(fromDefaults.exitCode, fromDefaults.stderr).toBe(0);
    expect(JSON.parse(fromFile.stdout)).toEqual(JSON.parse(fromDefaults.stdout));
    expect(JSON.parse(fromFile.stdout).storage.cas.small_blob_caching.backend.disk.path).toBe(path.join(home, '.cache/bzutil/storage/cas'));
    // --print_config starts nothing, so it creates no storage either.
    await expect(fs.access(path.join(home, '.cache'))).rejects.toThrow();
  });

  it('lets flags override the file', async () => {
    const run = await runCli(['serve', 'all', '--config', example, '--print_config', '--slots', '3', '--worker_lease', '1m', '--in_memory'], { env });
    expect(run.exitCode, run.stderr).toBe(0);
    const tree = JSON.parse(run.stdout);
    expect(tree.worker.slots).toBe(3);
    expect(tree.scheduler.worker_lease).toBe('1m');
    expect(tree.storage.cas).toEqual({ memory: { max_size_bytes: '1GiB' } });
  });

  it('prints the runner that would start (bwrap when installed, else local), and takes the sandbox flags on serve all and serve worker', async () => {
    const all = await runCli(['serve', 'all', '--print_config'], { env });
    expect(all.exitCode, all.stderr).toBe(0);
    expect(JSON.parse(all.stdout).worker).toMatchObject({ runner: bwrapAvailable() ? 'bwrap' : 'local', chroot: false, allow_root_actions: false });
    const flags = ['--runner=local', '--run_as=1000:1000', '--allow_root_actions', '--action_memory=2G', '--action_processes=64', '--action_file_size=1G', '--action_output_size=3G', '--print_config'];
    for (const role of ['all', 'worker']) {
      const run = await runCli(['serve', role, ...flags], { env });
      expect(run.exitCode, run.stderr).toBe(0);
      expect(JSON.parse(run.stdout).worker).toMatchObject({
        runner: 'local',
        run_as: '1000:1000',
        allow_root_actions: true,
        chroot: false,
        limits: { memory: '2GiB', processes: 64, file_size: '1GiB', output_size: '3GiB' },
      });
    }
    const chroot = await runCli(['serve', 'worker', '--runner=local', '--chroot', '--print_config'], { env });
    expect(chroot.exitCode).toBe(2);
    expect(chroot.stderr).toContain('worker.chroot: needs worker.runner bwrap');
  });

  it('exits 2 naming the bad key, and starts nothing', async () => {
    const bad = path.join(home, 'bad.yaml');
    await fs.writeFile(bad, (await fs.readFile(example, 'utf8')).replace('          max_size_bytes: 10GiB', '          max_size_bytes: 10 gigs'));
    const run = await runCli(['serve', 'all', '--config', bad, '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0'], { env, timeoutMs: 30_000 });
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain('storage.cas.small_blob_caching.backend.disk.max_size_bytes: expected a size like "10GiB"');
    expect(run.stderr).not.toContain('file_cache_max_size_bytes');
    expect(run.stdout).not.toContain('listening');
    await expect(fs.access(path.join(home, '.cache'))).rejects.toThrow();

    await fs.writeFile(bad, 'storage:\n  cas:\n    compression: {}\n');
    const planned = await runCli(['serve', 'scheduler', '--config', bad], { env, timeoutMs: 30_000 });
    expect(planned.exitCode).toBe(2);
    expect(planned.stderr).toContain('storage.cas.compression: is planned but not supported yet');

    // An implemented section is checked: TLS without its files names the missing keys.
    await fs.writeFile(bad, 'scheduler:\n  tls: {}\n');
    const incomplete = await runCli(['serve', 'scheduler', '--config', bad], { env, timeoutMs: 30_000 });
    expect(incomplete.exitCode).toBe(2);
    expect(incomplete.stderr).toContain('scheduler.tls.cert_file: is required');
  });

  it('starts the servers the example describes', async () => {
    const serve = await startServe(
      ['all', '--config', example, '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', '--slots=1'],
      ['apiserver', 'scheduler'],
      { env },
    );
    try {
      expect(serve.addresses.apiserver).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(serve.addresses.scheduler).toMatch(/^127\.0\.0\.1:\d+$/);
      // The disk stores of the example's tree were opened where it says.
      await fs.access(path.join(home, '.cache/bzutil/storage/cas'));
      await fs.access(path.join(home, '.cache/bzutil/storage/ac'));
      // So was the scheduler's state file.
      await fs.access(path.join(home, '.cache/bzutil/storage/scheduler.db'));
      const run = await runCli(['find_missing_blobs', `--cas_addr=${serve.addresses.apiserver}`, '--digests=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0'], { env });
      expect(run.exitCode, run.stderr).toBe(0);
    } finally {
      await serve.stop();
    }
  });
});

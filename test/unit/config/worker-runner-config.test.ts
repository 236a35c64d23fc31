/**
 * The worker's runner keys (worker.runner, chroot, run_as, allow_root_actions, limits): defaults,
 * validation with key paths, merging, the sandbox flags as shorthands.
 */
import { describe, expect, it } from 'vitest';
import { flagOverrides } from '../../../src/lib/cli/serve-overrides.js';
import { resolveConfig } from '../../../src/lib/config/resolve-config.js';
import { issuesOf } from './config-test-helpers.js';
import { bwrapAvailable, DEFAULT_LIMITS, parseRunAs } from '../../../src/lib/worker/sandbox-command.js';


describe('worker runner configuration', () => {
  it('defaults to the runner that would start here (bwrap when installed), the limits of DEFAULT_LIMITS and no run_as', () => {
    for (const role of ['all', 'worker'] as const) {
      const worker = resolveConfig({ role }).worker!;
      expect(worker.runner).toBe(bwrapAvailable() ? 'bwrap' : 'local');
      expect(worker.chroot).toBe(false);
      expect(worker.allow_root_actions).toBe(false);
      expect('run_as' in worker).toBe(false);
      expect(worker.limits).toEqual({ memory: '4GiB', processes: 1024, file_size: '16GiB', output_size: '16GiB' });
    }
    expect(DEFAULT_LIMITS).toEqual({ memoryBytes: 4 * 1024 ** 3, processes: 1024, fileSizeBytes: 16 * 1024 ** 3, outputBytes: 16 * 1024 ** 3 });
  });

  it('merges worker.limits key by key (file over defaults, flags over file) and writes sizes canonically', () => {
    const file = { worker: { runner: 'local', limits: { memory: '2G', file_size: 1073741824 } } };
    const config = resolveConfig({ role: 'worker', file: { tree: file, source: 'f' }, overrides: { worker: { limits: { processes: 64 } } } });
    expect(config.worker).toMatchObject({ runner: 'local', limits: { memory: '2GiB', processes: 64, file_size: '1GiB', output_size: '16GiB' } });
  });

  it('names the path of a bad runner, run_as, limit or unknown limit key', () => {
    expect(issuesOf({ worker: { runner: 'docker' } })).toEqual(['worker.runner: expected local or bwrap']);
    expect(issuesOf({ worker: { run_as: 'nobody' } })).toEqual(['worker.run_as: expected a numeric uid:gid like "65534:65534"']);
    expect(issuesOf({ worker: { limits: { memory: 'lots' } } })[0]).toMatch(/^worker\.limits\.memory: expected a size like "10GiB"/);
    expect(issuesOf({ worker: { limits: { processes: 0 } } })).toEqual(['worker.limits.processes: must be >= 1']);
    expect(issuesOf({ worker: { limits: { cpu: 2 } } })[0]).toMatch(/^worker\.limits\.cpu: unknown key \(expected one of memory, processes, file_size, output_size\)/);
    expect(issuesOf({ worker: { chroot: 'yes' } })).toEqual(['worker.chroot: must be boolean']);
  });

  it('refuses what the worker would refuse at start: chroot without bwrap, root actions not asked for', () => {
    expect(issuesOf({ worker: { runner: 'local', chroot: true } })).toEqual(['worker.chroot: needs worker.runner bwrap']);
    expect(issuesOf({ worker: { run_as: '0:0' } }, 'worker')).toEqual(['worker.run_as: is root: set worker.allow_root_actions to mean it']);
    expect(resolveConfig({ role: 'worker', file: { tree: { worker: { run_as: '0:0', allow_root_actions: true } }, source: 'f' } }).worker?.run_as).toBe('0:0');
    expect(resolveConfig({ role: 'all', file: { tree: { worker: { runner: 'bwrap', chroot: true } }, source: 'f' } }).worker).toMatchObject({ runner: 'bwrap', chroot: true });
  });
});

describe('sandbox flags', () => {
  it('are shorthands for the runner keys on serve worker and serve all', () => {
    const flags = {
      runner: 'bwrap' as const,
      run_as: '1000:1000',
      allow_root_actions: true,
      chroot: true,
      action_memory: '2G',
      action_processes: 50,
      action_file_size: '1G',
      action_output_size: '3G',
    };
    for (const role of ['worker', 'all'] as const) {
      expect(flagOverrides(role, flags).worker).toEqual({
        runner: 'bwrap',
        run_as: '1000:1000',
        allow_root_actions: true,
        chroot: true,
        limits: { memory: '2G', processes: 50, file_size: '1G', output_size: '3G' },
      });
    }
    // A flag not given sets nothing, so the file's value or the default stays.
    expect(flagOverrides('worker', { action_memory: '1G' }).worker).toEqual({ limits: { memory: '1G' } });
    expect(flagOverrides('all', { chroot: false }).worker).toEqual({ chroot: false });
    const resolved = resolveConfig({ role: 'all', overrides: flagOverrides('all', { action_memory: '1G', runner: 'local' }) });
    expect(resolved.worker).toMatchObject({ runner: 'local', limits: { memory: '1GiB', processes: 1024, file_size: '16GiB', output_size: '16GiB' } });
  });

  it('refuses a bad size or run_as naming the flag', () => {
    expect(() => flagOverrides('worker', { action_memory: 'big' })).toThrow(/Invalid --action_memory/);
    expect(() => flagOverrides('all', { action_output_size: '0' })).toThrow(/Invalid --action_output_size/);
    expect(() => flagOverrides('worker', { run_as: 'nobody' })).toThrow(/Invalid --run_as/);
  });
});

describe('parseRunAs', () => {
  it('reads numeric uid:gid only', () => {
    expect(parseRunAs('65534:65534')).toEqual({ uid: 65534, gid: 65534 });
    expect(parseRunAs(' 1000:100 ')).toEqual({ uid: 1000, gid: 100 });
    for (const bad of ['nobody', '1000', '1000:', ':1', '-1:1', '1:1:1']) expect(() => parseRunAs(bad)).toThrow(/Invalid run_as/);
  });
});

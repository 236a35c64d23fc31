import { describe, expect, it } from 'vitest';
import { bwrapCommand, localCommand, PRLIMIT_PATH, SETPRIV_PATH } from '../../../src/lib/worker/sandbox-command.js';

const base = {
  argv: ['sh', '-c', 'true'],
  cwd: '/w/actions/t/root/sub',
  inputRoot: '/w/actions/t/root',
  limits: { fileSizeBytes: 1000 },
};

/** The values that follow each occurrence of `flag` (for flags with `n` operands). */
function operands(args: readonly string[], flag: string, n = 1): string[][] {
  const out: string[][] = [];
  args.forEach((a, i) => {
    if (a === flag) out.push(args.slice(i + 1, i + 1 + n));
  });
  return out;
}

describe('sandbox command lines', () => {
  it('local: prlimit, then setpriv to the action uid with no groups, no capabilities and no_new_privs, then argv as given', () => {
    const cmd = localCommand({ ...base, runAs: { uid: 65534, gid: 65533 }, limits: { fileSizeBytes: 1000, memoryBytes: 5000 } });
    expect(cmd.file).toBe(PRLIMIT_PATH);
    expect(cmd.args).toEqual([
      '--fsize=1000:1000',
      '--as=5000:5000',
      '--',
      SETPRIV_PATH,
      '--reuid=65534',
      '--regid=65533',
      '--clear-groups',
      '--inh-caps=-all',
      '--no-new-privs',
      '--',
      'sh',
      '-c',
      'true',
    ]);
  });

  it('local without run_as: no setpriv, and no RLIMIT_AS when a cgroup holds memory', () => {
    const cmd = localCommand(base);
    expect(cmd.args).toEqual(['--fsize=1000:1000', '--', 'sh', '-c', 'true']);
  });

  it('bwrap: new namespaces, host paths read-only, the input root the only writable bind, traversable parents', () => {
    const cmd = bwrapCommand({ ...base, runAs: { uid: 65534, gid: 65534 }, network: true }, ['/usr', '/etc']);
    expect(cmd.file).toBe(PRLIMIT_PATH);
    for (const flag of ['--unshare-pid', '--unshare-ipc', '--unshare-uts', '--die-with-parent', '--new-session']) expect(cmd.args).toContain(flag);
    expect(cmd.args).not.toContain('--unshare-net');
    expect(cmd.args).not.toContain('--unshare-user');
    expect(operands(cmd.args, '--ro-bind', 2)).toEqual([
      ['/usr', '/usr'],
      ['/etc', '/etc'],
    ]);
    expect(operands(cmd.args, '--bind', 2)).toEqual([['/w/actions/t/root', '/w/actions/t/root']]);
    expect(operands(cmd.args, '--dir')).toEqual([['/w'], ['/w/actions'], ['/w/actions/t']]);
    expect(operands(cmd.args, '--chdir')).toEqual([['/w/actions/t/root/sub']]);
    // setpriv runs inside the sandbox, right before the action.
    const tail = cmd.args.slice(cmd.args.indexOf(SETPRIV_PATH));
    expect(tail.slice(-4)).toEqual(['--', 'sh', '-c', 'true']);
    expect(tail).toContain('--reuid=65534');
  });

  it.skipIf(process.getuid?.() !== 0)('bwrap as root: keeps CAP_SETUID and CAP_SETGID for setpriv, one capability per --cap-add', () => {
    const cmd = bwrapCommand({ ...base, runAs: { uid: 65534, gid: 65534 } });
    expect(operands(cmd.args, '--cap-add')).toEqual([['CAP_SETUID'], ['CAP_SETGID']]);
  });

  it('bwrap slot: the helper runs as root inside (no setpriv prefix), extra dirs bound at their own paths, a private mqueue', () => {
    const cmd = bwrapCommand({ ...base, argv: ['helper'], runAs: { uid: 65534, gid: 65534 }, slot: { extraBinds: ['/w/actions/.sandboxes/s/io'] } });
    expect(operands(cmd.args, '--bind', 2)).toEqual([
      [base.inputRoot, base.inputRoot],
      ['/w/actions/.sandboxes/s/io', '/w/actions/.sandboxes/s/io'],
    ]);
    expect(operands(cmd.args, '--mqueue')).toEqual([['/dev/mqueue']]);
    expect(cmd.args.slice(cmd.args.lastIndexOf('--') + 1)).toEqual(['helper']);
    expect(cmd.args).not.toContain(SETPRIV_PATH);
  });

  it('bwrap: a new network namespace when the platform says network=off', () => {
    expect(bwrapCommand({ ...base, network: false }, [])).toMatchObject({ args: expect.arrayContaining(['--unshare-net']) });
  });

  it('bwrap chroot mode: the input root is bound as /', () => {
    const cmd = bwrapCommand({ ...base, chroot: true, cwd: '/' }, ['/usr']);
    expect(operands(cmd.args, '--bind', 2)).toEqual([['/w/actions/t/root', '/']]);
    expect(operands(cmd.args, '--ro-bind', 2)).toEqual([]);
  });
});

import { describe, expect, it } from 'vitest';
import { cleanMessage } from '../../../src/lib/cli/base-command.js';
import { ActionFailedError } from '../../../src/lib/cli/execution-command.js';
import { EXIT_ACTION_FAILED, EXIT_NOT_FOUND, EXIT_SERVER_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, exitCodeFor, usageError } from '../../../src/lib/cli/exit-codes.js';
import { KeyValueError } from '../../../src/lib/cli/flags.js';
import { Code, StatusError, wrapStatus } from '../../../src/lib/errors/status-error.js';

describe('exitCodeFor', () => {
  it('follows the documented table: 1 action failed, 2 usage, 3 server error, 4 not found, 5 unreachable', () => {
    expect([EXIT_ACTION_FAILED, EXIT_USAGE, EXIT_SERVER_ERROR, EXIT_NOT_FOUND, EXIT_UNREACHABLE]).toEqual([1, 2, 3, 4, 5]);
    expect(exitCodeFor(new ActionFailedError('the action exited with code 7', 7))).toBe(1);
    expect(exitCodeFor(usageError('bad digest'))).toBe(2);
    expect(exitCodeFor(new KeyValueError('--env x'))).toBe(2);
    expect(exitCodeFor(Object.assign(new Error('Nonexistent flag: --x'), { oclif: { exit: 2 } }))).toBe(2);
    expect(exitCodeFor(StatusError.invalidArgument('refused'))).toBe(3);
    expect(exitCodeFor(StatusError.internal('boom'))).toBe(3);
    expect(exitCodeFor(StatusError.failedPrecondition('not a scheduler'))).toBe(3);
    expect(exitCodeFor(StatusError.notFound('no such operation'))).toBe(4);
    expect(exitCodeFor(StatusError.missingBlobs([{ hash: 'a'.repeat(64), sizeBytes: 1 }]))).toBe(4);
    expect(exitCodeFor(StatusError.unavailable('refused'))).toBe(5);
    expect(exitCodeFor(StatusError.deadlineExceeded('slow'))).toBe(5);
  });

  it('treats a missing local file as a usage error (2), not a server error, even when wrapped', () => {
    const enoent = Object.assign(new Error("ENOENT: no such file or directory, open 'x'"), { code: 'ENOENT', syscall: 'open', errno: -2 });
    expect(exitCodeFor(enoent)).toBe(2);
    expect(exitCodeFor(wrapStatus(enoent, 'Failed to hash x'))).toBe(2);
    // A server's NOT_FOUND has no system-call cause.
    expect(exitCodeFor(wrapStatus(new StatusError(Code.NOT_FOUND, 'gone'), 'Failed to read'))).toBe(4);
  });
});

describe('cleanMessage', () => {
  it("prints oclif's parse errors once, without its decorations", () => {
    expect(cleanMessage('Parsing --rpc_timeout \n\tInvalid duration "x"\nSee more help with --help')).toBe('Invalid --rpc_timeout: Invalid duration "x"');
    expect(cleanMessage('The following error occurred:\n  Missing required flag name\nSee more help with --help')).toBe('Missing required flag name');
    expect(cleanMessage('Nonexistent flag: --bogus\nSee more help with --help')).toBe('Nonexistent flag: --bogus');
    expect(cleanMessage('Failed to reach the CAS at x:1: refused\n')).toBe('Failed to reach the CAS at x:1: refused');
  });

  it('says each step of a layered error once', () => {
    const d = `${'0'.repeat(64)}/10`;
    expect(cleanMessage(`Failed to get the action result of ${d}: Failed to get action result for action ${d}: Blob ${d} not found`)).toBe(
      `Failed to get the action result of ${d}: not found`,
    );
    expect(cleanMessage(`Failed to read blob ${d}: Blob ${d} not found`)).toBe(`Failed to read blob ${d}: not found`);
    // Different subjects are different steps.
    expect(cleanMessage(`Failed to execute action ${d}: Failed to fetch input "a.txt": gone`)).toBe(`Failed to execute action ${d}: Failed to fetch input "a.txt": gone`);
  });
});

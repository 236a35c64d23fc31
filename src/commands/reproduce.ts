import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Flags } from '@oclif/core';
import { BzutilCommand, usageError } from '../lib/cli/base-command.js';
import { isEmptyOrAbsent } from '../lib/cli/download-outputs.js';
import { EXIT_ACTION_FAILED } from '../lib/cli/exit-codes.js';
import { remoteFlags } from '../lib/cli/flags.js';
import { prose } from '../lib/cli/help-text.js';
import { type ReproduceResult, reproduceAction } from '../lib/inspect/reproduce.js';

/** The `--json` result: where the inputs are and what ran (or would run), with its exit code. */
export type ReproduceCommandResult = ReproduceResult;

export default class Reproduce extends BzutilCommand<ReproduceCommandResult> {
  static override summary = "Materialise an action's inputs locally and run (or --print) its exact command.";
  static override description = prose(`
Debug a remote failure on your own machine: the action's input root is downloaded into --dir (a new
temporary directory when omitted; it must be empty or absent), the parent directories of its
outputs are created, and its command runs there with exactly its argv, its environment (nothing is
inherited from your shell; argv[0] is looked up in the Command's PATH, or /usr/bin:/bin) and its
working directory. The command's stdout and stderr are the terminal's.

With --print nothing runs: the inputs are prepared and the command is printed as one shell line
(cd DIR && env -i K=V ... ARGV) to run, edit or step through yourself.

Exits 0 when the command exits 0, and 1 when it fails (its own exit code is in the message and in
--json's exitCode). The action's timeout is not enforced locally.`);
  static override examples = [
    { description: 'Run an action here', command: '<%= config.bin %> <%= command.id %> --action=<hash>/<size>' },
    { description: 'Prepare the inputs in ./repro and print the command', command: '<%= config.bin %> <%= command.id %> --action=<hash>/<size> --dir=./repro --print' },
  ];
  static override flags = {
    ...remoteFlags,
    action: Flags.string({ summary: 'Digest <hash>/<size> of the Action to reproduce.', required: true }),
    dir: Flags.string({ summary: 'Directory for the input root (must be empty or absent); a new temporary directory when omitted.' }),
    print: Flags.boolean({ summary: 'Prepare the inputs and print the command line instead of running it.', default: false }),
  };

  async run(): Promise<ReproduceCommandResult> {
    const { flags } = await this.parse(Reproduce);
    const actionDigest = this.parseDigest(flags.action, '--action', flags);
    if (flags.dir && !(await isEmptyOrAbsent(flags.dir))) throw usageError(`Failed to reproduce: --dir ${JSON.stringify(flags.dir)} is not empty`);
    const cas = await this.connectCas(flags);
    const dir = flags.dir ?? (await mkdtemp(join(tmpdir(), 'bzutil-reproduce-')));
    const result = await reproduceAction(cas, actionDigest, dir, { print: flags.print, stdout: this.jsonEnabled() ? process.stderr : 'inherit' });
    if (flags.print) {
      this.log(result.shellCommand);
      return result;
    }
    if (!this.jsonEnabled()) process.stderr.write(`Inputs in ${result.dir}\n`);
    if (result.exitCode !== 0) {
      const why = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.exitCode}`;
      throw Object.assign(new Error(`Action ${actionDigest}: the command ${why} (inputs in ${result.dir})`), { actionFailed: true, oclif: { exit: EXIT_ACTION_FAILED } });
    }
    return result;
  }
}

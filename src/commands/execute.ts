import { Flags } from '@oclif/core';
import { ExecutionCommand, describeMissingInputs, failOnNonzeroFlag, missingInputsError, schedulerFlags } from '../lib/cli/execution-command.js';
import { type OperationView, formatOperation, isMissingInputs } from '../lib/cli/operation-format.js';
import { usageError } from '../lib/cli/base-command.js';
import { prose } from '../lib/cli/help-text.js';
import { LiveLogs } from '../lib/cli/follow-logs.js';

/** The `--json` result: the Operation (see OperationView); with --wait it is done. */
export type ExecuteResult = OperationView;

export default class Execute extends ExecutionCommand<ExecuteResult> {
  static override summary = 'Execute an Action remotely and print its Operation.';
  static override description = prose(`Sends Execute for an Action digest (from upload_action) to the scheduler. Without --wait it
prints the first Operation the scheduler answers, whose name you follow with get_operation or
wait_execution; the action keeps running after the command exits. With --wait it follows the
operation until it is done (a spinner shows the stage on a terminal) and prints the result: exit
code, output digests and how long each phase took. --follow (with --wait) also prints the action's
stdout and stderr live while it runs, as bzutil tail does.

A failing action (non-zero exit code) is a result, not an error: the command exits 0 and reports
the action's exit code, unless --fail_on_nonzero (then exit code 1). Inputs missing from the CAS
fail with exit code 4 and the list of missing blobs; an unreachable scheduler fails with exit code 5.
The printed name (operations/<uuid>) and its bare <uuid> are both accepted by get_operation.`);
  static override examples = [
    { description: 'The walkthrough: start it, print the operation name', command: '<%= config.bin %> <%= command.id %> --action=<hash>/<size>' },
    { description: 'Run to completion and fail like the action', command: '<%= config.bin %> <%= command.id %> --action=<hash>/<size> --wait --fail_on_nonzero' },
    { description: 'Watch its stdout and stderr while it runs', command: '<%= config.bin %> <%= command.id %> --action=<hash>/<size> --wait --follow' },
    { description: 'Bypass the action cache, as a script', command: '<%= config.bin %> <%= command.id %> --action=<hash>/<size> --skip_cache --wait --json' },
    { description: 'Against another scheduler', command: '<%= config.bin %> <%= command.id %> --action=<hash>/<size> --scheduler=buildfarm:9099' },
  ];
  static override flags = {
    ...schedulerFlags,
    action: Flags.string({ summary: 'Digest <hash>/<size> of the Action to run (printed by upload_action).', required: true }),
    skip_cache: Flags.boolean({ summary: 'Run the action even if the action cache has a result for it.', aliases: ['skip-cache'], default: false }),
    priority: Flags.integer({ summary: 'Execution priority: lower runs sooner; 0 is the server default.', default: 0 }),
    wait: Flags.boolean({ summary: 'Follow the operation until it is done and print the result.', default: false }),
    follow: Flags.boolean({ summary: "With --wait: print the action's stdout and stderr live while it runs (as bzutil tail does).", default: false }),
    fail_on_nonzero: failOnNonzeroFlag,
  };

  async run(): Promise<ExecuteResult> {
    const { flags } = await this.parse(Execute);
    const actionDigest = this.parseDigest(flags.action, '--action', flags);
    if (flags.fail_on_nonzero && !flags.wait) throw usageError('Failed to execute: --fail_on_nonzero needs --wait (without it the result is not known yet)');
    if (flags.follow && !flags.wait) throw usageError('Failed to execute: --follow needs --wait');
    const client = await this.connectScheduler(flags);
    const step = `Failed to execute action ${actionDigest}`;
    const stream = client.execute(actionDigest, { skipCacheLookup: flags.skip_cache, priority: flags.priority });
    let view: OperationView;
    try {
      if (!flags.wait) view = await this.firstOperation(stream, `execute action ${actionDigest}`);
      else if (!flags.follow) view = await this.followUntilDone(client, stream, `execute action ${actionDigest}`);
      else {
        const live = new LiveLogs(client, (text) => this.warn(text), this.jsonEnabled());
        view = await this.followUntilDone(client, stream, `execute action ${actionDigest}`, { onOperation: (op) => live.start(op), progress: false });
        await live.done();
      }
    } catch (err) {
      throw describeMissingInputs(err, step);
    }
    if (isMissingInputs(view)) throw missingInputsError(view);
    this.log(formatOperation(view).trimEnd());
    if (flags.fail_on_nonzero) this.failOnNonzero(view);
    return view;
  }
}

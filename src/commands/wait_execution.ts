import { ExecutionCommand, failOnNonzeroFlag, missingInputsError, operationNameFlag, schedulerFlags } from '../lib/cli/execution-command.js';
import { type OperationView, formatOperation, isMissingInputs } from '../lib/cli/operation-format.js';
import { prose } from '../lib/cli/help-text.js';

/** The `--json` result: the done Operation. */
export type WaitExecutionResult = OperationView;

export default class WaitExecution extends ExecutionCommand<WaitExecutionResult> {
  static override summary = 'Wait until an operation is done and print its result.';
  static override description = prose(`Re-attaches to an operation started by execute (Execution.WaitExecution) and follows it until it
is done, with a spinner showing the stage on a terminal, then prints it like execute --wait. Use it
after execute without --wait, or when a connection dropped while waiting.

As with execute, a failing action is a result (exit 0) unless --fail_on_nonzero; an unknown
operation fails with exit code 4. --name takes operations/<uuid> or the bare <uuid>.`);
  static override examples = [
    '<%= config.bin %> <%= command.id %> --name=operations/5c1e2d4a-...',
    { description: 'The bare UUID, as the seed prints it', command: '<%= config.bin %> <%= command.id %> --name=5c1e2d4a-...' },
    { description: 'In a script', command: 'op=$(bzutil execute --action=<hash>/<size> --json | jq -r .name); <%= config.bin %> <%= command.id %> --name=$op --fail_on_nonzero' },
  ];
  static override flags = {
    ...schedulerFlags,
    name: operationNameFlag,
    fail_on_nonzero: failOnNonzeroFlag,
  };

  async run(): Promise<WaitExecutionResult> {
    const { flags } = await this.parse(WaitExecution);
    const client = await this.connectScheduler(flags);
    const view = await this.followUntilDone(client, client.waitExecution(flags.name), `wait for operation ${JSON.stringify(flags.name)}`);
    if (isMissingInputs(view)) throw missingInputsError(view);
    this.log(formatOperation(view).trimEnd());
    if (flags.fail_on_nonzero) this.failOnNonzero(view);
    return view;
  }
}

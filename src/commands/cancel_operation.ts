import { Flags } from '@oclif/core';
import { decodeOperation } from '../lib/client/execution-client.js';
import { ExecutionCommand, operationNameFlag, schedulerFlags } from '../lib/cli/execution-command.js';
import { type OperationView, formatOperation, toOperationView } from '../lib/cli/operation-format.js';
import { prose } from '../lib/cli/help-text.js';

/** The `--json` result: the operation after the cancellation request (done with --wait). */
export type CancelOperationResult = OperationView;

export default class CancelOperation extends ExecutionCommand<CancelOperationResult> {
  static override summary = 'Cancel a queued or running operation.';
  static override description = prose(`Asks the scheduler to cancel an operation (Operations.CancelOperation). A queued action is
dropped at once; a running one is killed on its worker (with its whole process group). Either way the
operation ends done, with CANCELLED in its ExecResponse status. Cancelling a done operation changes
nothing.

Without --wait the command prints the operation as it is right after the request, which may still
be EXECUTING while the worker stops it; with --wait it prints the final state.`);
  static override examples = [
    '<%= config.bin %> <%= command.id %> --name=operations/5c1e2d4a-...',
    { description: 'Cancel and wait until it has stopped', command: '<%= config.bin %> <%= command.id %> --name=operations/5c1e2d4a-... --wait' },
  ];
  static override flags = {
    ...schedulerFlags,
    name: operationNameFlag,
    wait: Flags.boolean({ summary: 'Wait until the operation is done and print its final state.', default: false }),
  };

  async run(): Promise<CancelOperationResult> {
    const { flags } = await this.parse(CancelOperation);
    const client = await this.connectScheduler(flags);
    await client.cancelOperation(flags.name);
    const view = flags.wait
      ? await this.followUntilDone(client, client.waitExecution(flags.name), `wait for operation ${JSON.stringify(flags.name)} to stop`)
      : toOperationView(decodeOperation(await client.getOperation(flags.name)));
    this.log(formatOperation(view).trimEnd());
    return view;
  }
}

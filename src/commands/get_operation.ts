import { Flags } from '@oclif/core';
import { decodeOperation } from '../lib/client/execution-client.js';
import { ExecutionCommand, operationNameFlag, schedulerFlags } from '../lib/cli/execution-command.js';
import { type OperationView, formatOperation, toFullOperationJson, toOperationView } from '../lib/cli/operation-format.js';
import { prose } from '../lib/cli/help-text.js';

/** The `--json` result: the Operation's view, or with --json_full the whole decoded Operation. */
export type GetOperationResult = OperationView | Record<string, unknown>;

export default class GetOperation extends ExecutionCommand<GetOperationResult> {
  static override summary = 'Print the current state of an operation.';
  static override description = prose(`Asks the scheduler (Operations.GetOperation) for an operation started by execute and prints it
once, in the same layout as execute: its stage, and once done the action's exit code, outputs and
timings. Run it again to see progress, or use wait_execution to block until it is done.

--json prints bzutil's summary (the same shape as execute --json); --json_full prints the whole
Operation as protobuf decodes it (int64 as numbers, enums as names, bytes in base64, Any fields
unpacked), for debugging a server. --name takes operations/<uuid> or the bare <uuid> as the seed
prints it; an unknown name fails with exit code 4.`);
  static override examples = [
    { description: 'The walkthrough (the seed passes the bare UUID)', command: '<%= config.bin %> <%= command.id %> --name=5c1e2d4a-...' },
    { description: 'The full name as execute prints it', command: '<%= config.bin %> <%= command.id %> --name=operations/5c1e2d4a-...' },
    { description: 'Everything the server sent', command: '<%= config.bin %> <%= command.id %> --name=operations/5c1e2d4a-... --json_full' },
  ];
  static override flags = {
    ...schedulerFlags,
    name: operationNameFlag,
    json_full: Flags.boolean({ summary: 'Print the whole decoded Operation as JSON.', aliases: ['json-full'], default: false }),
  };

  async run(): Promise<GetOperationResult> {
    const { flags } = await this.parse(GetOperation);
    const client = await this.connectScheduler(flags);
    const op = await client.getOperation(flags.name);
    if (flags.json_full) {
      const full = toFullOperationJson(op);
      if (!this.jsonEnabled()) this.log(JSON.stringify(full, null, 2));
      return full;
    }
    const view = toOperationView(decodeOperation(op));
    this.log(formatOperation(view).trimEnd());
    return view;
  }
}

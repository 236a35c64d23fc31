import { Flags } from '@oclif/core';
import { decodeOperation } from '../lib/client/execution-client.js';
import { ExecutionCommand, operationNameFlag, schedulerFlags } from '../lib/cli/execution-command.js';
import { type FollowedLogs, followLogs } from '../lib/cli/follow-logs.js';
import { prose } from '../lib/cli/help-text.js';

/** The `--json` result: the operation and how many bytes of each stream were printed. */
export interface TailResult extends FollowedLogs {
  name: string;
}

export default class Tail extends ExecutionCommand<TailResult> {
  static override summary = "Print a running action's stdout and stderr live, until it ends.";
  static override description = prose(`Reads the live log streams of an operation (the stdout_stream_name and stderr_stream_name of its
ExecuteOperationMetadata, with ByteStream Read on the scheduler) and copies them as the action
writes them: its stdout to this command's stdout, its stderr to stderr. Ends when the action ends;
for an operation that is already done it prints the action's final stdout and stderr. The scheduler
keeps the last 1 MiB of each live stream: a reader that starts late sees the tail, not the start.

An unknown operation fails with exit code 4. --name takes operations/<uuid> or the bare <uuid>.
With --json the streams are not printed, only their sizes.`);
  static override examples = [
    '<%= config.bin %> <%= command.id %> --name=operations/5c1e2d4a-...',
    { description: 'Start an action and watch it', command: 'op=$(bzutil execute --action=<hash>/<size> --json | jq -r .name); <%= config.bin %> <%= command.id %> --name=$op' },
  ];
  static override flags = {
    ...schedulerFlags,
    name: operationNameFlag,
    stream: Flags.string({ summary: 'Which stream to print.', options: ['both', 'stdout', 'stderr'], default: 'both' }),
  };

  async run(): Promise<TailResult> {
    const { flags } = await this.parse(Tail);
    const client = await this.connectScheduler(flags);
    const op = decodeOperation(await client.getOperation(flags.name));
    // Under --json the streams are still read (their sizes are the result) but not printed.
    const discard = { write: () => true, once: () => undefined } as unknown as NodeJS.WritableStream;
    const out = (stream: NodeJS.WritableStream) => (this.jsonEnabled() ? discard : stream);
    const sinks = {
      stdout: flags.stream === 'stderr' ? undefined : out(process.stdout),
      stderr: flags.stream === 'stdout' ? undefined : out(process.stderr),
    };
    const followed = await followLogs(client, op, sinks);
    return { name: op.name, ...followed };
  }
}

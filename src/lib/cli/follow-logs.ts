/**
 * Live stdout and stderr of an operation, printed as the action produces them (`bzutil tail`,
 * `execute --wait --follow`): both streams named in ExecuteOperationMetadata are read at once with
 * ByteStream Read on the scheduler and copied, unchanged, to this process's stdout and stderr.
 */
import type { DecodedOperation, ExecutionClient } from '../client/execution-client.js';
import { logStreamNamesOf } from '../client/log-stream-names.js';

export interface FollowedLogs {
  stdoutBytes: number;
  stderrBytes: number;
}

/** Where each stream goes; a stream without a sink is not read (and counts 0 bytes). */
export interface LogSinks {
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
}

/** Copies the operation's two streams to `sinks` until the action ends (or `signal` fires). */
export async function followLogs(client: ExecutionClient, op: DecodedOperation, sinks: LogSinks, signal?: AbortSignal): Promise<FollowedLogs> {
  const names = logStreamNamesOf(op);
  const copy = async (name: string, sink: NodeJS.WritableStream | undefined): Promise<number> => {
    let bytes = 0;
    if (!sink) return 0;
    for await (const data of client.readLogStream(name, { signal })) {
      bytes += data.length;
      // Respect the sink's backpressure (a slow pipe), so memory does not grow with the output.
      if (!sink.write(data)) await new Promise<void>((resolve) => sink.once('drain', () => resolve()));
    }
    return bytes;
  };
  const [stdoutBytes, stderrBytes] = await Promise.all([copy(names.stdout, sinks.stdout), copy(names.stderr, sinks.stderr)]);
  return { stdoutBytes, stderrBytes };
}

/**
 * `execute --wait --follow`: starts copying the streams at the first Operation that names them and
 * lets the command wait for the copy to end. A scheduler that names no streams, or a read that
 * fails, is reported once and does not fail the command: the result is still printed.
 */
export class LiveLogs {
  private copying?: Promise<void>;

  constructor(
    private readonly client: ExecutionClient,
    private readonly warn: (text: string) => void,
    /** Under --json the streams are not printed. */
    private readonly quiet: boolean,
  ) {}

  start(op: DecodedOperation): void {
    if (this.copying || op.stage === 'CACHE_CHECK' || op.stage === 'UNKNOWN') return;
    if (!op.metadata?.stdoutStreamName && !op.metadata?.stderrStreamName) {
      this.copying = Promise.resolve();
      this.warn(`The scheduler names no live log streams for ${op.name}; the output is in the result`);
      return;
    }
    const sinks = this.quiet ? {} : { stdout: process.stdout, stderr: process.stderr };
    this.copying = followLogs(this.client, op, sinks).then(
      () => undefined,
      (err: unknown) => this.warn(`Failed to follow the live output of ${op.name}: ${(err as Error).message}`),
    );
  }

  /** Resolves once the copy has ended (the action ended). */
  async done(): Promise<void> {
    await this.copying;
  }
}

/**
 * The schedulers a worker may talk to (`serve worker --scheduler a:9098,b:9098`: the worker ports of
 * a fleet sharing one Redis queue). The worker talks to one at a time; when a call to it fails for
 * a reason another scheduler may not share (unreachable, shutting down), it moves on to the next,
 * round the list, so that it comes back to the first once that one is back. Its running tasks keep
 * their leases: every scheduler of the fleet knows them, and the worker lists them in its next
 * Synchronize wherever that goes (within the scheduler's worker grace).
 */
import type * as grpc from '@grpc/grpc-js';
import { Code, StatusError } from '../lib/errors/status-error.js';

/** Codes after which another scheduler is worth a try. */
const FAILOVER_CODES = new Set([Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED, Code.UNKNOWN, Code.INTERNAL, Code.UNIMPLEMENTED]);

/** `a:9098,b:9098` -> its addresses; INVALID_ARGUMENT for an empty entry. */
export function parseSchedulerAddresses(text: string): string[] {
  const addresses = text.split(',').map((a) => a.trim());
  if (addresses.length === 0 || addresses.some((a) => a === '')) {
    throw StatusError.invalidArgument(`Failed to start worker: scheduler address list ${JSON.stringify(text)} has an empty entry`, [
      { field: 'worker.scheduler_address', description: 'host:port, or several separated by commas' },
    ]);
  }
  return addresses;
}

export class SchedulerFailover {
  private readonly clients: grpc.Client[];
  private index = 0;
  /** Failovers since the last successful call: once it reaches the list's length, every scheduler failed. */
  private failuresInARow = 0;

  constructor(
    readonly addresses: readonly string[],
    connect: (address: string) => grpc.Client,
  ) {
    this.clients = addresses.map(connect);
  }

  get client(): grpc.Client {
    return this.clients[this.index]!;
  }

  get address(): string {
    return this.addresses[this.index]!;
  }

  succeeded(): void {
    this.failuresInARow = 0;
  }

  /**
   * A call to `client` failed with `code`: moves to the next scheduler (unless another call moved
   * already, or the code is the scheduler's answer rather than its absence). Returns true while some
   * scheduler of the list has not failed yet since the last success: retry at once, else back off.
   */
  failed(client: grpc.Client, code: Code): boolean {
    if (this.addresses.length === 1 || !FAILOVER_CODES.has(code)) return false;
    if (client === this.client) {
      this.index = (this.index + 1) % this.clients.length;
      this.failuresInARow++;
    }
    return this.failuresInARow < this.clients.length;
  }

  close(): void {
    for (const client of this.clients) client.close();
  }
}

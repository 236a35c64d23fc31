/**
 * Following an operation: Execute, WaitExecution and WaitOperation report an operation's state at
 * every change (and at least every keep-alive interval) until it is done. Changes are signalled
 * through the entry's `version` and `listeners` (see `bump`), so a follower never polls.
 */
import type { Clock } from '../util/clock.js';
import type { OperationSnapshot } from './operation-snapshot.js';
import { abortStatus } from '../errors/status-error.js';
import { type OperationEntry, shuttingDown, snapshotOf } from './scheduler-state.js';

export class OperationFollower {
  constructor(
    private readonly clock: Clock,
    /** Aborted when the scheduler closes: every follower then ends with UNAVAILABLE. */
    private readonly closing: AbortSignal,
    private readonly keepAliveMs: number,
  ) {}

  /** Yields the entry's state now, then on every change or keep-alive, until it is COMPLETED. */
  async *follow(entry: OperationEntry, signal?: AbortSignal): AsyncGenerator<OperationSnapshot> {
    for (;;) {
      const seen = entry.version;
      const snapshot = snapshotOf(entry);
      yield snapshot;
      if (snapshot.stage === 'COMPLETED') return;
      await this.waitForChange(entry, seen, this.keepAliveMs, signal);
    }
  }

  /** Resolves when the operation is done or after `timeoutMs`, with its state then. */
  async waitUntilDone(entry: OperationEntry, timeoutMs: number, signal?: AbortSignal): Promise<OperationSnapshot> {
    const deadline = this.clock.now() + Math.max(0, timeoutMs);
    for (;;) {
      const snapshot = snapshotOf(entry);
      const remainingMs = deadline - this.clock.now();
      if (snapshot.stage === 'COMPLETED' || remainingMs <= 0) return snapshot;
      await this.waitForChange(entry, entry.version, remainingMs, signal);
    }
  }

  /** Resolves when `entry` changes past `seenVersion` or after `timeoutMs`; rejects on abort or close. */
  waitForChange(entry: OperationEntry, seenVersion: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (entry.version !== seenVersion) return resolve();
      if (signal?.aborted) return reject(abortStatus(signal));
      if (this.closing.aborted) return reject(shuttingDown());
      const timer = new AbortController();
      let settled = false;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        entry.listeners.delete(onChange);
        timer.abort();
        signal?.removeEventListener('abort', onAbort);
        this.closing.removeEventListener('abort', onClose);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onChange = () => finish();
      const onAbort = () => finish(abortStatus(signal!));
      const onClose = () => finish(shuttingDown());
      entry.listeners.add(onChange);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.closing.addEventListener('abort', onClose, { once: true });
      this.clock.sleep(timeoutMs, timer.signal).then(
        () => finish(),
        () => {},
      );
    });
  }
}

/**
 * The `memory` scheduler state: nothing outlives the process, but the Action and Command of each
 * queued execution wait in a file of a private temporary directory rather than as a decoded copy on
 * the heap. A queue of a few hundred actions with megabyte Commands would otherwise hold gigabytes
 * (issue 11); this way a queued execution costs the scheduler a few hundred bytes of bookkeeping
 * and the dispatcher reads its file back, synchronously, when it hands it to a worker (as it does
 * from SQLite). The file stays until the execution completes, so a requeue after a lost worker
 * finds it again; the directory is removed on close.
 */
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoadedAction } from './load-action.js';
import { PlatformProperties } from './platform-properties.js';
import { decodeLoaded, encodeLoaded } from './state-codec.js';
import type { SchedulerStateStore, StoredExecution } from './state-store.js';

export class SpoolStateStore implements SchedulerStateStore {
  readonly durable = false;
  readonly holdsActions = true;
  /** The private directory of this store's files. */
  readonly directory: string;

  /** Creates its own directory under `parent`. @param parent @default os.tmpdir() */
  constructor(parent: string = tmpdir()) {
    this.directory = mkdtempSync(join(parent, 'bzutil-queued-actions-'));
  }

  load(): { operations: []; executions: [] } {
    return { operations: [], executions: [] };
  }

  transaction(fn: () => void): void {
    fn();
  }

  putOperation(): void {}

  deleteOperation(): void {}

  putExecution(execution: StoredExecution, loaded?: LoadedAction): void {
    if (loaded) writeFileSync(this.pathOf(execution.seq), encodeLoaded(loaded), { mode: 0o600 });
    else if (execution.stage === 'COMPLETED') this.deleteExecution(execution.seq);
  }

  loadAction(seq: number): LoadedAction | undefined {
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.pathOf(seq));
    } catch {
      // Gone (completed, or the directory was removed under us): the dispatcher fails the execution.
      return undefined;
    }
    // The platform was matched from the execution already; the task does not carry it.
    return decodeLoaded(bytes, PlatformProperties.empty());
  }

  deleteExecution(seq: number): void {
    try {
      unlinkSync(this.pathOf(seq));
    } catch {
      // Never written (a cache hit) or already removed.
    }
  }

  close(): void {
    rmSync(this.directory, { recursive: true, force: true });
  }

  private pathOf(seq: number): string {
    return join(this.directory, `${seq}.task`);
  }
}

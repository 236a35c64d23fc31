/**
 * `scheduler.state` -> the store: `memory` (nothing survives the process; queued Actions wait in
 * temporary files) or `sqlite:PATH`.
 */
import { StatusError } from '../errors/status-error.js';
import { SqliteStateStore } from './sqlite-state-store.js';
import { SpoolStateStore } from './spool-state-store.js';
import { parseStateSpec, type SchedulerStateStore } from './state-store.js';

/** Opens the store a `scheduler.state` setting names; INVALID_ARGUMENT for an unknown kind. */
export function createStateStore(setting: string): SchedulerStateStore {
  const spec = parseStateSpec(setting);
  if (!spec) {
    throw StatusError.invalidArgument(`Failed to open the scheduler state: ${JSON.stringify(setting)} is not "memory", "sqlite:PATH" or "redis://HOST:PORT[/DB]"`, [
      { field: 'scheduler.state', description: 'Must be "memory", "sqlite:PATH" or "redis://HOST:PORT[/DB]"' },
    ]);
  }
  if (spec.kind === 'redis') throw StatusError.invalidArgument('Failed to open the scheduler state: redis:// is a shared queue, not a journal; open it with createBuildQueue');
  // `memory` keeps queued Actions and Commands in temporary files, not on the heap (spool-state-store.ts).
  return spec.kind === 'memory' ? new SpoolStateStore() : new SqliteStateStore(spec.path);
}

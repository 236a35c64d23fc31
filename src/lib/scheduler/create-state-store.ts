/**
 * `scheduler.state` -> the store: `memory` (nothing survives the process) or `sqlite:PATH`.
 */
import { StatusError } from '../errors/status-error.js';
import { SqliteStateStore } from './sqlite-state-store.js';
import { NO_STATE_STORE, parseStateSpec, type SchedulerStateStore } from './state-store.js';

/** Opens the store a `scheduler.state` setting names; INVALID_ARGUMENT for an unknown kind. */
export function createStateStore(setting: string): SchedulerStateStore {
  const spec = parseStateSpec(setting);
  if (!spec) {
    throw StatusError.invalidArgument(`Failed to open the scheduler state: ${JSON.stringify(setting)} is not "memory", "sqlite:PATH" or "redis://HOST:PORT[/DB]"`, [
      { field: 'scheduler.state', description: 'Must be "memory", "sqlite:PATH" or "redis://HOST:PORT[/DB]"' },
    ]);
  }
  if (spec.kind === 'redis') throw StatusError.invalidArgument('Failed to open the scheduler state: redis:// is a shared queue, not a journal; open it with createBuildQueue');
  return spec.kind === 'memory' ? NO_STATE_STORE : new SqliteStateStore(spec.path);
}

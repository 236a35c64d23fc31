/**
 * The build queue's whole test file again, with every queue writing through to a fresh SQLite
 * state store: the durable backend must not change anything a client or a worker sees.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach } from 'vitest';
import { SqliteStateStore } from '../../../src/lib/scheduler/sqlite-state-store.js';
import { closeStateStores, useStateStore } from './scheduler-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'bzutil-queue-sqlite-'));
let n = 0;
useStateStore(() => new SqliteStateStore(join(dir, `state-${++n}.db`)));
afterEach(() => closeStateStores());
afterAll(() => rmSync(dir, { recursive: true, force: true }));

await import('./in-memory-build-queue.test.js');

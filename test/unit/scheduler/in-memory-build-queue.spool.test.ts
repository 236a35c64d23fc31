/**
 * The build queue's whole test file again over the `memory` state's SpoolStateStore: queued
 * Actions and Commands wait in temporary files instead of on the heap, and nothing a client or a
 * worker sees changes.
 */
import { afterEach } from 'vitest';
import { SpoolStateStore } from '../../../src/lib/scheduler/spool-state-store.js';
import { closeStateStores, useStateStore } from './scheduler-fixtures.js';

useStateStore(() => new SpoolStateStore());
afterEach(() => closeStateStores());

await import('./in-memory-build-queue.test.js');

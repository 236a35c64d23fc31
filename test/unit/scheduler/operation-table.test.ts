import { describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { InMemoryOperationTable, listPage, parseListRequest } from '../../../src/lib/scheduler/operation-table.js';
import type { Execution, OperationEntry } from '../../../src/lib/scheduler/scheduler-state.js';

const digest = Digest.ofBytes('', 'sha256', new TextEncoder().encode('action'));

function entry(name: string, seq: number): OperationEntry {
  const instanceName = name.includes('/operations/') ? name.slice(0, name.indexOf('/operations/')) : '';
  return { name, seq, actionDigest: digest.withInstanceName(instanceName), version: 0, listeners: new Set(), ownResponse: seq % 2 ? { status: { code: 0 } } : undefined };
}

describe('InMemoryOperationTable', () => {
  it('refuses a duplicate name and deletes only the entry that owns a name', () => {
    const table = new InMemoryOperationTable();
    const a = entry('operations/a', 0);
    table.insert(a);
    expect(() => table.insert(entry('operations/a', 1))).toThrow(/already in use/);
    table.delete(entry('operations/a', 2));
    expect(table.get('operations/a')).toBe(a);
    table.delete(a);
    expect(table.get('operations/a')).toBeUndefined();
  });

  it('expires finished operations in completion order, at the boundary, once', () => {
    const table = new InMemoryOperationTable();
    const a = entry('operations/a', 0);
    const b = entry('operations/b', 1);
    table.insert(a);
    table.insert(b);
    table.markCompleted(b, 100);
    table.markCompleted(a, 200);
    table.markCompleted(a, 50); // the first completion time wins
    expect(table.expireCompleted(99)).toEqual([]);
    expect(table.expireCompleted(100)).toEqual([b]);
    expect(table.expireCompleted(1000)).toEqual([a]);
    expect(table.size).toBe(0);
    expect(table.expireCompleted(1000)).toEqual([]);
  });

  it('clears the in-flight index only for the execution it points at', () => {
    const table = new InMemoryOperationTable();
    const first = { seq: 1 } as Execution;
    const second = { seq: 2 } as Execution;
    table.setInFlight('k', first);
    table.clearInFlight('k', second);
    expect(table.inFlight('k')).toBe(first);
    table.clearInFlight('k', first);
    expect(table.inFlight('k')).toBeUndefined();
  });

  it('pages in creation order with a token, one instance and a done filter', () => {
    const table = new InMemoryOperationTable();
    for (let i = 0; i < 5; i++) table.insert(entry(`operations/${i}`, i));
    table.insert(entry('other/operations/x', 5));
    table.insert(entry('other/sub/operations/y', 6));
    const first = listPage(table, parseListRequest({ name: 'operations', pageSize: 2 }));
    expect(first.operations.map((o) => o.name)).toEqual(['operations/0', 'operations/1']);
    const second = listPage(table, parseListRequest({ name: 'operations', pageSize: 2, pageToken: first.nextPageToken }));
    expect(second.operations.map((o) => o.name)).toEqual(['operations/2', 'operations/3']);
    const last = listPage(table, parseListRequest({ name: 'operations', pageSize: 2, pageToken: second.nextPageToken }));
    expect(last).toMatchObject({ nextPageToken: '' });
    expect(last.operations.map((o) => o.name)).toEqual(['operations/4']);
    // An empty collection is the empty instance, never every instance.
    const done = listPage(table, parseListRequest({ filter: 'done = true' }));
    expect(done.operations.map((o) => o.name)).toEqual(['operations/1', 'operations/3']);
    // `other` does not see `other/sub` (a name prefix is not an instance).
    expect(listPage(table, parseListRequest({ name: 'other/operations' })).operations.map((o) => o.name)).toEqual(['other/operations/x']);
    expect(listPage(table, parseListRequest({ name: 'other/sub' })).operations.map((o) => o.name)).toEqual(['other/sub/operations/y']);
    const all = listPage(table, parseListRequest({ allInstances: true, filter: 'done=true' }));
    expect(all.operations.map((o) => o.name)).toEqual(['operations/1', 'operations/3', 'other/operations/x']);
    expect(() => parseListRequest({ name: '../operations' })).toThrow(/segment/);
    expect(() => parseListRequest({ pageToken: 'x1' })).toThrow(/page token/);
    expect(() => parseListRequest({ filter: 'stage=QUEUED' })).toThrow(/filter/);
  });
});

import { describe, expect, it } from 'vitest';
import { InMemoryExecutionQueue, type QueueItem } from '../../../src/lib/scheduler/execution-queue.js';
import { PlatformProperties } from '../../../src/lib/scheduler/platform-properties.js';

const linux = PlatformProperties.fromProto({ properties: [{ name: 'OSFamily', value: 'linux' }] });
const mac = PlatformProperties.fromProto({ properties: [{ name: 'OSFamily', value: 'macos' }] });

function item(id: string, priority: number, seq: number, platform = linux, instanceName = '', queuedBytes = 100): QueueItem & { id: string } {
  return { id, priority, seq, platform, actionDigest: { instanceName }, queuedBytes };
}

describe('InMemoryExecutionQueue', () => {
  it('orders by priority, then arrival, and a requeued item goes back to its old place', () => {
    const q = new InMemoryExecutionQueue<ReturnType<typeof item>>();
    const a = item('a', 0, 1);
    const b = item('b', 0, 2);
    const urgent = item('urgent', -5, 3);
    const late = item('late', 10, 0);
    for (const x of [b, late, a, urgent]) q.push(x);
    expect([...q.values()].map((x) => x.id)).toEqual(['urgent', 'a', 'b', 'late']);

    expect(q.claim(linux, 1).map((x) => x.id)).toEqual(['urgent']);
    const [first] = q.claim(linux, 1);
    expect(first!.id).toBe('a');
    q.push(first!);
    expect([...q.values()].map((x) => x.id)).toEqual(['a', 'b', 'late']);
    expect(q.size).toBe(3);
  });

  it('claims only what the worker platform satisfies, skipping the rest in place', () => {
    const q = new InMemoryExecutionQueue<ReturnType<typeof item>>();
    q.push(item('m1', 0, 1, mac));
    q.push(item('l1', 0, 2));
    q.push(item('m2', 0, 3, mac));
    q.push(item('l2', 0, 4));
    q.push(item('l3', 0, 5));
    expect(q.claim(linux, 2).map((x) => x.id)).toEqual(['l1', 'l2']);
    expect([...q.values()].map((x) => x.id)).toEqual(['m1', 'm2', 'l3']);
    // An empty worker platform satisfies only actions that require nothing.
    expect(q.claim(PlatformProperties.empty(), 10)).toEqual([]);
    expect(q.claim(mac, 10).map((x) => x.id)).toEqual(['m1', 'm2']);
  });

  it('removes a queued item once', () => {
    const q = new InMemoryExecutionQueue<ReturnType<typeof item>>();
    const a = item('a', 0, 1);
    q.push(a);
    expect(q.remove(a)).toBe(true);
    expect(q.remove(a)).toBe(false);
    expect(q.size).toBe(0);
  });

  it('keeps what each instance has waiting through push, claim, remove and requeue', () => {
    const q = new InMemoryExecutionQueue<ReturnType<typeof item>>();
    const a1 = item('a1', 0, 1, linux, 'a', 1000);
    const a2 = item('a2', 0, 2, mac, 'a', 500);
    const b1 = item('b1', 0, 3, linux, 'b', 7);
    for (const x of [a1, a2, b1]) q.push(x);
    expect(q.usage('a')).toEqual({ actions: 2, bytes: 1500 });
    expect(q.usage('b')).toEqual({ actions: 1, bytes: 7 });
    expect(q.usage('c')).toEqual({ actions: 0, bytes: 0 });

    // A claim takes a1 and b1 out of their instances' counts; a requeue puts a1 back.
    expect(q.claim(linux, 5).map((x) => x.id)).toEqual(['a1', 'b1']);
    expect(q.usage('a')).toEqual({ actions: 1, bytes: 500 });
    expect(q.usage('b')).toEqual({ actions: 0, bytes: 0 });
    q.push(a1);
    expect(q.usage('a')).toEqual({ actions: 2, bytes: 1500 });

    q.remove(a2);
    expect(q.remove(a2)).toBe(false);
    expect(q.usage('a')).toEqual({ actions: 1, bytes: 1000 });
  });
});

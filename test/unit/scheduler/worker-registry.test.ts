import { describe, expect, it } from 'vitest';
import type { Execution } from '../../../src/lib/scheduler/scheduler-state.js';
import { WorkerRegistry } from '../../../src/lib/scheduler/worker-registry.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { silentLogger } from '../../../src/lib/util/logger.js';

const linux = { properties: [{ name: 'OSFamily', value: 'linux' }] };

describe('WorkerRegistry', () => {
  it('registers a worker, counts its slots and matches platforms', () => {
    const clock = new FakeClock(1000);
    const registry = new WorkerRegistry(clock, silentLogger);
    const w = registry.register({ workerId: 'w1', workerName: 'box', platform: linux, slots: 2 });
    expect(registry.register({ workerId: 'w1', workerName: 'box', platform: linux, slots: 2 })).toBe(w);
    expect(w).toMatchObject({ name: 'box', slots: 2, syncCount: 2 });
    registry.assign({} as Execution, w, 't1');
    expect(registry.freeSlots(w)).toBe(1);
    expect(registry.task('t1')?.worker).toBe(w);
    expect(registry.anySatisfies(w.platform)).toBe(true);
    registry.remove(w);
    expect(registry.isLive(w)).toBe(false);
    expect(registry.anySatisfies(w.platform)).toBe(false);
  });

  it('reconciles: a task unlisted since before the previous call is lost; unknown tasks are cancelled once', () => {
    const registry = new WorkerRegistry(new FakeClock(0), silentLogger);
    const w = registry.register({ workerId: 'w', slots: 4 });
    registry.assign({} as Execution, w, 'old');
    registry.register({ workerId: 'w', slots: 4 });
    registry.assign({} as Execution, w, 'fresh');
    registry.register({ workerId: 'w', slots: 4 });
    const lost = registry.reconcile(w, ['stranger']);
    expect(lost.map((t) => t.id)).toEqual(['old']);
    expect([...w.pendingCancels]).toEqual(['stranger']);
    w.pendingCancels.clear();
    expect(registry.reconcile(w, ['stranger', 'fresh', 'old'])).toEqual([]);
    expect([...w.pendingCancels]).toEqual([]);
  });

  it('expires a lease only while no poll is held, and a held poll times out with its fallback', async () => {
    const clock = new FakeClock(0);
    const registry = new WorkerRegistry(clock, silentLogger);
    const w = registry.register({ workerId: 'w', slots: 1 });
    const held = registry.hold(w, 500, undefined, () => ({ tasks: [] }), () => ({ cancelTaskIds: ['timed-out'] }));
    await clock.advance(400);
    expect(registry.expired(clock.now(), 100)).toEqual([]);
    await clock.advance(100);
    await expect(held).resolves.toEqual({ cancelTaskIds: ['timed-out'] });
    expect(w.poll).toBeUndefined();
    expect(registry.expired(clock.now() + 99, 100)).toEqual([]);
    expect(registry.expired(clock.now() + 100, 100)).toEqual([w]);
  });

  it('answers a held poll with an empty response when the call is aborted', async () => {
    const registry = new WorkerRegistry(new FakeClock(0), silentLogger);
    const w = registry.register({ workerId: 'w', slots: 1 });
    const abort = new AbortController();
    const held = registry.hold(w, 10_000, abort.signal, () => ({ tasks: [] }), () => ({ cancelTaskIds: ['x'] }));
    abort.abort();
    await expect(held).resolves.toEqual({ tasks: [] });
  });
});

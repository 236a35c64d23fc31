/**
 * LogStreams, the scheduler's store of live output: only the lease holder of a task appends, each
 * stream keeps a bounded tail (memory does not grow with output), gaps restart the tail, ended
 * streams are forgotten after their retention, and the whole store stays under its byte budget.
 */
import { describe, expect, it } from 'vitest';
import { Code, toStatusError } from '../../../src/lib/errors/status-error.js';
import { LogStreams, logStreamName, parseLogStreamName } from '../../../src/lib/scheduler/log-streams.js';
import { FakeClock } from '../../../src/lib/util/clock.js';

const OP = 'operations/3f0e9a1c-1111-4222-8333-444455556666';
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

function store(opts: ConstructorParameters<typeof LogStreams>[0] = {}) {
  const clock = new FakeClock(1_700_000_000_000);
  const logs = new LogStreams({ clock, ...opts });
  const assign = (taskId: string, operationName = OP, workerId = 'w1', leaseToken = `lease-${taskId}`) =>
    logs.taskAssigned({ taskId, operationName, leaseToken }, workerId);
  const append = (taskId: string, stream: 0 | 1, offset: number, data: string, workerId = 'w1', leaseToken = `lease-${taskId}`) =>
    logs.append({ workerId, taskId, leaseToken, chunks: [{ stream, offset, data: bytes(data) }] });
  return { clock, logs, assign, append };
}

const codeOf = (fn: () => void): Code | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return toStatusError(err).code;
  }
};

describe('log stream names', () => {
  it('round-trips <operation>/logs/<stream> and leaves blob names alone', () => {
    const name = logStreamName(`team/a/${OP}`, 'stderr');
    expect(name).toBe(`team/a/${OP}/logs/stderr`);
    expect(parseLogStreamName(name)).toMatchObject({ stream: 'stderr', operation: { instanceName: 'team/a', name: `team/a/${OP}` } });
    expect(parseLogStreamName(`blobs/${'a'.repeat(64)}/12`)).toBeUndefined();
    expect(codeOf(() => parseLogStreamName('nonsense/logs/stdout'))).toBe(Code.INVALID_ARGUMENT);
  });
});

describe('LogStreams', () => {
  it('keeps what the lease holder appends, per stream, readable from an offset', () => {
    const { logs, assign, append } = store();
    assign('t1');
    append('t1', 0, 0, 'hello ');
    append('t1', 0, 6, 'world\n');
    append('t1', 1, 0, 'oops\n');
    const l = logs.get(OP)!;
    expect(text(l.stdout.readFrom(0, 100).data)).toBe('hello world\n');
    expect(text(l.stdout.readFrom(6, 3).data)).toBe('wor');
    expect(text(l.stderr.readFrom(0, 100).data)).toBe('oops\n');
    // A resent chunk (overlap) is not stored twice.
    append('t1', 0, 6, 'world\nmore');
    expect(text(l.stdout.readFrom(0, 100).data)).toBe('hello world\nmore');
  });

  it('refuses appends of unknown tasks (NOT_FOUND) and of workers without the lease (PERMISSION_DENIED)', () => {
    const { logs, assign, append } = store();
    expect(codeOf(() => append('nope', 0, 0, 'x'))).toBe(Code.NOT_FOUND);
    assign('t1');
    expect(codeOf(() => append('t1', 0, 0, 'x', 'w2'))).toBe(Code.PERMISSION_DENIED);
    expect(codeOf(() => append('t1', 0, 0, 'x', 'w1', 'forged'))).toBe(Code.PERMISSION_DENIED);
    expect(logs.heldBytes).toBe(0);
    // A retry of the operation under a new task: the old task may no longer write.
    assign('t2');
    expect(codeOf(() => append('t1', 0, 0, 'x'))).toBe(Code.NOT_FOUND);
    append('t2', 0, 0, 'y');
    logs.taskEnded('t2');
    expect(codeOf(() => append('t2', 0, 1, 'z'))).toBe(Code.NOT_FOUND);
    expect(logs.get(OP)!.ended).toBe(true);
  });

  it('keeps only the last tailBytes of a stream however much is written, and restarts at a gap', () => {
    const { logs, assign, append } = store({ tailBytes: 1000 });
    assign('t1');
    let offset = 0;
    for (let i = 0; i < 500; i++) {
      append('t1', 0, offset, 'x'.repeat(99) + '\n');
      offset += 100;
    }
    const tail = logs.get(OP)!.stdout;
    expect(tail.size).toBe(1000);
    expect(tail.end).toBe(50_000);
    expect(logs.heldBytes).toBe(1000);
    // An offset older than the tail reads from the oldest byte held.
    expect(tail.readFrom(0, 10).offset).toBe(49_000);
    append('t1', 0, 60_000, 'after a gap');
    expect(text(tail.readFrom(0, 100).data)).toBe('after a gap');
    expect(tail.start).toBe(60_000);
  });

  it('forgets ended streams after keepEndedMs, and evicts to stay under maxTotalBytes', () => {
    const { clock, logs, assign, append } = store({ keepEndedMs: 1000, maxTotalBytes: 250, tailBytes: 200 });
    assign('t1');
    append('t1', 0, 0, 'a'.repeat(100));
    logs.taskEnded('t1');
    clock.advance(2000);
    assign('t2', 'operations/other');
    expect(logs.get(OP)).toBeUndefined();
    append('t2', 0, 0, 'b'.repeat(200));
    assign('t3', 'operations/third');
    clock.advance(1);
    append('t3', 0, 0, 'c'.repeat(200));
    // 400 bytes > 250: the least recently written stream goes.
    expect(logs.heldBytes).toBeLessThanOrEqual(250);
    expect(logs.get('operations/other')).toBeUndefined();
    expect(logs.get('operations/third')).toBeDefined();
  });

  it('wakes readers waiting for output', async () => {
    const { logs, assign, append } = store();
    assign('t1');
    const l = logs.get(OP)!;
    const started = Date.now();
    const waiting = l.changed(10_000);
    append('t1', 0, 0, 'now');
    await waiting;
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

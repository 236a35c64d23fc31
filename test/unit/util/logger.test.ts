import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/lib/util/logger.js';

describe('createLogger', () => {
  it('writes one JSON object per record with time, level, component, message and fields', () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info', component: 'scheduler', write: (l) => lines.push(l) });
    logger.debug('hidden below the level');
    logger.child('actions').info('Action executing', { operation: 'operations/x', actionDigest: 'ab/1', worker: 'w1', instance: '' });
    logger.warn('plain');
    expect(lines).toHaveLength(2);
    const record = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(record).toMatchObject({ level: 'info', component: 'scheduler/actions', msg: 'Action executing', operation: 'operations/x', actionDigest: 'ab/1', worker: 'w1', instance: '' });
    expect(new Date(record.time as string).getTime()).not.toBeNaN();
    expect(JSON.parse(lines[1]!)).toMatchObject({ level: 'warn', msg: 'plain', component: 'scheduler' });
  });

  it('serializes errors with their message and stack, and prints debug at level debug', () => {
    const lines: string[] = [];
    createLogger({ level: 'debug', write: (l) => lines.push(l) }).error('failed', { error: new RangeError('boom') });
    createLogger({ level: 'debug', write: (l) => lines.push(l) }).debug('RPC', { method: 'Execution.Execute', code: 'OK' });
    const record = JSON.parse(lines[0]!) as { error: { type: string; message: string; stack: string } };
    expect(record.error).toMatchObject({ type: 'RangeError', message: 'boom' });
    expect(record.error.stack).toContain('RangeError');
    expect(JSON.parse(lines[1]!)).toMatchObject({ level: 'debug', method: 'Execution.Execute' });
  });

  it('prints short human lines in the human format', () => {
    const lines: string[] = [];
    createLogger({ component: 'worker', write: (l) => lines.push(l), format: 'human' }).info('Task finished', { exitCode: 0 });
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  \[worker\] Task finished \{"exitCode":0\}$/);
  });
});

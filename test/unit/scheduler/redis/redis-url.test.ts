import { describe, expect, it } from 'vitest';
import { Code, StatusError } from '../../../../src/lib/errors/status-error.js';
import { parseRedisUrl } from '../../../../src/lib/scheduler/redis/redis-url.js';
import { redactUrlPassword } from '../../../../src/lib/util/redact-url.js';
import { readResponse, storeResponse } from '../../../../src/lib/scheduler/redis/redis-state.js';

describe('parseRedisUrl', () => {
  it('reads host, port, database and credentials', () => {
    expect(parseRedisUrl('redis://10.0.0.5:6379')).toEqual({ host: '10.0.0.5', port: 6379, db: 0 });
    expect(parseRedisUrl('redis://sched-redis:7000/3')).toEqual({ host: 'sched-redis', port: 7000, db: 3 });
    expect(parseRedisUrl('redis://bzutil:s%40cret@[::1]:6379/1')).toEqual({ host: '::1', port: 6379, db: 1, username: 'bzutil', password: 's@cret' });
  });

  it('refuses what is not redis://HOST:PORT[/DB] with INVALID_ARGUMENT, never echoing the password', () => {
    for (const bad of ['redis://host', 'redis://host:1/x', 'http://host:1', 'redis://:hunter2@host/0', 'redis://host:1/0?x=1']) {
      let caught: unknown;
      try {
        parseRedisUrl(bad);
      } catch (err) {
        caught = err;
      }
      expect(caught, bad).toBeInstanceOf(StatusError);
      expect((caught as StatusError).code).toBe(Code.INVALID_ARGUMENT);
      expect((caught as StatusError).message).not.toContain('hunter2');
    }
  });
});

describe('redactUrlPassword', () => {
  it('replaces the password and leaves everything else', () => {
    expect(redactUrlPassword('redis://:hunter2@127.0.0.1:6379/0')).toBe('redis://:***@127.0.0.1:6379/0');
    expect(redactUrlPassword('redis://admin:hunter2@r:6379')).toBe('redis://admin:***@r:6379');
    expect(redactUrlPassword('redis://r:6379/1')).toBe('redis://r:6379/1');
    expect(redactUrlPassword('sqlite:/var/lib/x.db')).toBe('sqlite:/var/lib/x.db');
  });
});

describe('stored responses', () => {
  it('round-trip protobuf responses and read the scripts\' status-only form', () => {
    const response = { status: { code: Code.OK }, result: { exitCode: 3 } };
    expect(readResponse(storeResponse(response)).result?.exitCode).toBe(3);
    expect(readResponse('s:4:ran: past its timeout')).toEqual({ status: { code: Code.DEADLINE_EXCEEDED, message: 'ran: past its timeout' } });
  });
});

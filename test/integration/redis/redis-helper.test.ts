/** The Redis test helper starts a real redis-server on a free port and stops it. */
import { createConnection } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasRedisServer, startRedis, type RedisServer } from '../../helpers/redis-server.js';

function ping(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
    socket.once('data', (d) => {
      resolve(d.toString());
      socket.end();
    });
    socket.once('error', reject);
  });
}

describe.runIf(hasRedisServer())('redis-server test helper', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('answers PING on the port it reports, and is gone after stop()', async () => {
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(await ping(redis.port)).toBe('+PONG\r\n');
    await redis.stop();
    expect(redis.child.exitCode !== null || redis.child.signalCode !== null).toBe(true);
    await expect(ping(redis.port)).rejects.toThrow();
  });
});

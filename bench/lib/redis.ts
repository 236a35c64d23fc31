/**
 * A redis-server for the benchmarks that measure the Redis scheduler state (E1-redis, Q1-redis),
 * started by the tests' helper (free loopback port, persistence off) but spawned into the runner's
 * process registry, so it is stopped with everything else, Ctrl-C included.
 */
import { hasRedisServer, type RedisServer, startRedis } from '../../test/helpers/redis-server.js';
import { spawnTracked } from './processes.js';

/** Starts redis-server in a directory under `tmpDir`; resolves once it accepts connections. */
export async function startBenchRedis(tmpDir: string): Promise<RedisServer> {
  if (!hasRedisServer()) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
  return startRedis({ tmpDir, spawn: spawnTracked });
}

/** What redis-server counted of its commands so far (INFO commandstats): calls and server time per command. */
export interface RedisCommandStats {
  calls: number;
  usec: number;
  byCommand: Record<string, { calls: number; usec: number }>;
}

export async function redisCommandStats(url: string): Promise<RedisCommandStats> {
  const { Redis } = await import('ioredis');
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const text = await client.info('commandstats');
    const stats: RedisCommandStats = { calls: 0, usec: 0, byCommand: {} };
    for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
      const [, name, calls, usec] = match;
      // The probe's own INFO calls are not the scheduler's.
      if (name === 'info') continue;
      stats.byCommand[name!] = { calls: Number(calls), usec: Number(usec) };
      stats.calls += Number(calls);
      stats.usec += Number(usec);
    }
    return stats;
  } finally {
    client.disconnect();
  }
}

/** `after - before`, per command. */
export function commandStatsDelta(before: RedisCommandStats, after: RedisCommandStats): RedisCommandStats {
  const delta: RedisCommandStats = { calls: after.calls - before.calls, usec: after.usec - before.usec, byCommand: {} };
  for (const [name, a] of Object.entries(after.byCommand)) {
    const b = before.byCommand[name] ?? { calls: 0, usec: 0 };
    if (a.calls > b.calls) delta.byCommand[name] = { calls: a.calls - b.calls, usec: a.usec - b.usec };
  }
  return delta;
}

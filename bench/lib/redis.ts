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

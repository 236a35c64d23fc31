/**
 * A fleet's storage for end-to-end tests: `serve apiserver` processes each holding a share of one
 * sharded CAS on its own disk (`<work>/apiserver<i>/cas`) and forwarding the other shares to its
 * peers, with the action cache in Redis. Every apiserver gets the same shard list (its own shard a
 * `disk` node keyed by its address, the others `grpc` nodes, keyed by address too), so each answers
 * for the whole CAS and agrees with a scheduler or worker given `--cas` with the same addresses.
 * Ports are picked free up front because each apiserver must know its peers' addresses.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './redis-server.js';
import { type ServeProcess, startServe } from './serve-process.js';

export interface ShardedApiservers {
  /** `host:port` of each apiserver, in order: what `--cas a,b` takes. */
  addresses: string[];
  processes: ServeProcess[];
}

/** Starts one apiserver per host in `hosts` (loopback addresses), sharing `actionCacheUrl` (`redis://…`). */
export async function startShardedApiservers(work: string, hosts: string[], actionCacheUrl: string): Promise<ShardedApiservers> {
  const addresses: string[] = [];
  for (const host of hosts) addresses.push(`${host}:${await freePort(host)}`);
  const processes: ServeProcess[] = [];
  for (const [i, address] of addresses.entries()) {
    const shards = addresses.map((other) =>
      other === address
        ? { weight: 1, key: address, backend: { disk: { path: join(work, `apiserver${i}`, 'cas'), max_size_bytes: '1GiB' } } }
        : { weight: 1, backend: { grpc: { address: other } } },
    );
    const config = { apiserver: { listen_address: address }, storage: { cas: { sharding: { shards } }, action_cache: { redis: { url: actionCacheUrl } } } };
    const file = join(work, `apiserver${i}.json`);
    await writeFile(file, JSON.stringify(config));
    processes.push(await startServe(['apiserver', `--config=${file}`, `--http_listen=${hosts[i]}:0`], ['apiserver']));
  }
  return { addresses, processes };
}

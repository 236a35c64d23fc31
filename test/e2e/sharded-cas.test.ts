/**
 * A fleet's storage: two apiservers each holding half of the CAS on its own disk, one action cache
 * in Redis that both apiservers and the scheduler share, and a scheduler and worker given
 * `--cas a,b`, all separate processes of the built binary on 127.0.0.1.
 *
 * Each apiserver's own CAS is a `sharding` node too (config file, helpers/sharded-apiservers.ts):
 * its half on its disk, the other half forwarded to its peer, with the same shard keys as the
 * scheduler's `--cas` list (shards given by address are keyed by address). So every apiserver
 * answers for the whole CAS, and its action cache's completeness check sees outputs stored on
 * either half.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecuteResult } from '../../src/commands/execute.js';
import type { FindMissingBlobsResult } from '../../src/commands/find_missing_blobs.js';
import type { UploadDirResult } from '../../src/commands/upload_dir.js';
import { ActionCacheClient } from '../../src/lib/client/action-cache-client.js';
import { RemoteConnection } from '../../src/lib/client/connection.js';
import { Digest } from '../../src/lib/digest/digest.js';
import { hasRedisServer, type RedisServer, startRedis } from '../helpers/redis-server.js';
import { runCliJson } from '../helpers/run-cli.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';
import { startShardedApiservers } from '../helpers/sharded-apiservers.js';

const sha256 = (data: string) => createHash('sha256').update(data).digest('hex');

/** Every blob file under a disk store's directory (a blob is a file named `<hash>-<size>`). */
async function blobFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && /^[0-9a-f]{64}-\d+$/.test(entry.name)) out.push(entry.name);
  }
  return out;
}

describe.runIf(hasRedisServer())('a CAS sharded over two apiservers, with the action cache in Redis', () => {
  let work: string;
  let redis: RedisServer;
  let apiservers: ServeProcess[] = [];
  let scheduler: ServeProcess;
  let worker: ServeProcess;
  let addresses: string[];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'bzutil-e2e-sharded-'));
    redis = await startRedis();
    ({ addresses, processes: apiservers } = await startShardedApiservers(work, ['127.0.0.1', '127.0.0.1'], redis.url));
    const cas = `--cas=${addresses.join(',')}`;
    scheduler = await startServe(
      ['scheduler', '--listen=127.0.0.1:0', '--worker_listen=127.0.0.1:0', cas, `--ac=${redis.url}`, `--data_dir=${join(work, 'scheduler')}`],
      ['scheduler', 'workers'],
    );
    worker = await startServe(['worker', `--scheduler=${scheduler.addresses.workers}`, cas, '--slots=2', `--work_dir=${join(work, 'worker')}`], ['worker']);
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    await scheduler?.stop();
    for (const a of apiservers) await a.stop();
    await redis?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('runs the walkthrough actions, spreads their blobs over both apiservers and answers a cached result through either', async () => {
    // The scheduler does not warn about an unshared action cache: it is in Redis.
    expect(scheduler.logs()).not.toMatch(/action cache is not shared/);
    const sched = scheduler.addresses.scheduler!;
    const input = join(work, 'input');
    await mkdir(join(input, 'sub'), { recursive: true });
    const contents = Array.from({ length: 24 }, (_, i) => `input file ${i}\n`);
    for (const [i, text] of contents.entries()) await writeFile(join(input, i % 2 ? 'sub' : '', `f${i}.txt`), text);

    // The seed's walkthrough: upload_command, upload_dir, upload_action, execute, through the scheduler.
    const command = await runCliJson<{ digest: string }>([
      'upload_command',
      `--cas_addr=${sched}`,
      '--output_files=out.txt',
      '--',
      'sh',
      '-c',
      'cat f0.txt sub/f1.txt > out.txt; echo sharded',
    ]);
    const dir = await runCliJson<UploadDirResult>(['upload_dir', `--cas_addr=${sched}`, input]);
    expect(dir.files).toBe(24);
    const action = await runCliJson<{ digest: string }>(['upload_action', `--cas_addr=${sched}`, `--command=${command.digest}`, `--input_root=${dir.digest}`]);
    const executed = await runCliJson<ExecuteResult>(['execute', `--grpc_addr=${sched}`, `--action=${action.digest}`, '--wait']);
    expect(executed.response?.status?.codeName).toBe('OK');
    expect(executed.response?.result?.exitCode).toBe(0);
    const out = 'input file 0\ninput file 1\n';
    expect(executed.response?.result?.outputFiles).toEqual([{ path: 'out.txt', digest: `${sha256(out)}/${out.length}`, isExecutable: false }]);

    // Every input file is on exactly one apiserver's disk, and both hold some.
    const onDisk = await Promise.all([0, 1].map((i) => blobFiles(join(work, `apiserver${i}`, 'cas'))));
    const names = contents.map((text) => `${sha256(text)}-${text.length}`);
    const held = onDisk.map((files) => names.filter((n) => files.includes(n)).length);
    expect(held[0]! + held[1]!).toBe(24);
    expect(held[0]).toBeGreaterThan(0);
    expect(held[1]).toBeGreaterThan(0);
    expect(onDisk[0]!.filter((f) => onDisk[1]!.includes(f))).toEqual([]);

    // Each apiserver answers for the whole CAS: nothing of the action is missing through either.
    const digests = [command.digest, dir.digest, action.digest, ...contents.map((text) => `${sha256(text)}/${text.length}`), `${sha256(out)}/${out.length}`];
    for (const address of addresses) {
      const found = await runCliJson<FindMissingBlobsResult>(['find_missing_blobs', `--cas_addr=${address}`, ...digests.map((d) => `--digests=${d}`)]);
      expect(found.missing).toEqual([]);
    }

    // The result the scheduler stored in Redis is a hit through either apiserver.
    for (const address of addresses) {
      const connection = new RemoteConnection(address);
      try {
        const result = await new ActionCacheClient(connection).getActionResult(Digest.parse(action.digest));
        expect(result.exitCode).toBe(0);
        expect(result.outputFiles?.[0]?.path).toBe('out.txt');
      } finally {
        connection.close();
      }
    }

    // And a second Execute is answered from the shared cache.
    const cached = await runCliJson<ExecuteResult>(['execute', `--grpc_addr=${sched}`, `--action=${action.digest}`, '--wait']);
    expect(cached.response?.cachedResult).toBe(true);
  }, 120_000);

  it('warns a scheduler given several CAS shards without a shared action cache', async () => {
    const lone = await startServe(
      ['scheduler', '--listen=127.0.0.1:0', '--worker_listen=127.0.0.1:0', `--cas=${addresses.join(',')}`, '--state=memory'],
      ['scheduler', 'workers'],
    );
    try {
      expect(lone.logs()).toMatch(/storage\.cas has 2 shards but the action cache is not shared/);
    } finally {
      await lone.stop();
    }
  }, 60_000);
});

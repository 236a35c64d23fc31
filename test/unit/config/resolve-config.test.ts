import * as fs from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, type ResolvedConfig, type ServeRole } from '../../../src/lib/config/config.js';
import { readConfigFile, resolveConfig } from '../../../src/lib/config/resolve-config.js';
import { issuesOf } from './config-test-helpers.js';
import { validateConfigTree } from '../../../src/lib/config/validate-config.js';
import { defaultCacheDir } from '../../../src/lib/config/defaults.js';


describe('resolveConfig', () => {
  const savedCacheHome = process.env.XDG_CACHE_HOME;
  beforeAll(() => {
    process.env.XDG_CACHE_HOME = '/cache';
  });
  afterAll(() => {
    if (savedCacheHome === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = savedCacheHome;
  });

  it('fills every key serve all reads with today\'s defaults', () => {
    const config = resolveConfig({ role: 'all' });
    const portLimits = { max_concurrent_streams: 512, max_receive_message_size: '4160KiB', max_parked_upload_memory: '64MiB', max_pending_uploads: 1000 };
    expect(config.apiserver).toEqual({ listen_address: '127.0.0.1:12100', upload_idle_timeout: '1m', allow_ac_updates: false, processes: 1, ...portLimits });
    expect(config.scheduler).toEqual({
      listen_address: '127.0.0.1:9099',
      worker_lease: '5s',
      max_worker_slots: 256,
      allow_ac_updates: false,
      state: `sqlite:${path.join(defaultCacheDir(), 'storage', 'scheduler.db')}`,
      worker_grace: '5s',
      operation_retention: '1h',
      ...portLimits,
      max_queued_actions_per_instance: 10000,
      max_queued_bytes_per_instance: '1GiB',
    });
    expect(config.worker?.work_dir).toBe('/cache/bzutil/work');
    expect(config.worker?.slots).toBeGreaterThan(0);
    expect(config.storage.cas).toEqual({
      small_blob_caching: { max_size_bytes: '64MiB', backend: { disk: { path: '/cache/bzutil/storage/cas', max_size_bytes: '10GiB' } } },
    });
    expect(config.storage.action_cache).toEqual({
      small_blob_caching: { max_size_bytes: '8MiB', backend: { disk: { path: '/cache/bzutil/storage/ac', max_size_bytes: '640MiB' } } },
    });
  });

  it('gives each role only the sections it reads, with remote storage for scheduler and worker', () => {
    const scheduler = resolveConfig({ role: 'scheduler' });
    expect(Object.keys(scheduler).sort()).toEqual(['http', 'log_level', 'scheduler', 'shutdown_grace_period', 'storage']);
    expect(scheduler.storage).toEqual({ cas: { grpc: { address: 'localhost:12100' } }, action_cache: { grpc: { address: 'localhost:12100' } } });
    // The worker port is private and loopback by default; serve all opens none.
    expect(scheduler.scheduler?.worker_listen_address).toBe('127.0.0.1:9098');
    expect(resolveConfig({ role: 'all' }).scheduler?.worker_listen_address).toBeUndefined();
    const worker = resolveConfig({ role: 'worker' });
    expect(Object.keys(worker).sort()).toEqual(['http', 'log_level', 'shutdown_grace_period', 'storage', 'worker']);
    expect(worker.worker).toMatchObject({ scheduler_address: 'localhost:9098', work_dir: '/cache/bzutil/worker' });
    expect(worker.storage).toEqual({ cas: { grpc: { address: 'localhost:12100' } } });
  });

  it('gives each role its own default HTTP port, and takes port 0, another address or "" (off)', () => {
    const ports = (['all', 'apiserver', 'scheduler', 'worker'] as const).map((role) => resolveConfig({ role }).http.listen_address);
    expect(ports).toEqual(['127.0.0.1:8080', '127.0.0.1:8081', '127.0.0.1:8082', '127.0.0.1:8083']);
    expect(resolveConfig({ role: 'all' }).shutdown_grace_period).toBe('30s');
    for (const listen_address of ['127.0.0.1:0', '[::1]:9100', '']) {
      expect(resolveConfig({ role: 'apiserver', overrides: { http: { listen_address } } }).http.listen_address).toBe(listen_address);
    }
    expect(resolveConfig({ role: 'worker', overrides: { shutdown_grace_period: '0s' } }).shutdown_grace_period).toBe('0ms');
    expect(issuesOf({ http: { listen_address: 'nowhere' } })[0]).toMatch(/^http\.listen_address/);
    expect(issuesOf({ http: { port: 1 } })[0]).toMatch(/^http/);
    expect(issuesOf({ shutdown_grace_period: 'soon' })[0]).toMatch(/^shutdown_grace_period/);
  });

  it('lays the file over the defaults and the flags over the file', () => {
    const file = { scheduler: { worker_lease: '2m' }, worker: { slots: 3, platform: { OSFamily: 'Linux' } } };
    const config = resolveConfig({ role: 'all', file: { tree: file, source: 'f' }, overrides: { worker: { slots: 5 } } });
    expect(config.scheduler).toMatchObject({ listen_address: '127.0.0.1:9099', worker_lease: '2m', worker_grace: '5s', max_worker_slots: 256, allow_ac_updates: false });
    expect(config.worker).toMatchObject({ slots: 5, platform: { OSFamily: 'Linux' } });
  });

  it('replaces a store tree whole instead of merging two kinds into one node', () => {
    const file = { storage: { cas: { memory: { max_size_bytes: '1G' } } } };
    const config = resolveConfig({ role: 'apiserver', file: { tree: file, source: 'f' } });
    expect(config.storage.cas).toEqual({ memory: { max_size_bytes: '1GiB' } });
    // The action cache the file did not mention keeps its default.
    expect(config.storage.action_cache).toHaveProperty('small_blob_caching');
  });

  it('writes sizes and durations in canonical form, so equal trees print equal', () => {
    const file = { apiserver: { upload_idle_timeout: '90000ms' }, storage: { cas: { disk: { path: '/d', max_size_bytes: 10 * 1024 ** 3 } } } };
    const config = resolveConfig({ role: 'apiserver', file: { tree: file, source: 'f' } });
    expect(config.apiserver?.upload_idle_timeout).toBe('90s');
    expect(config.storage.cas).toEqual({ disk: { path: '/d', max_size_bytes: '10GiB' } });
  });

  it('expands ~ in paths to the home directory', () => {
    const file = { worker: { work_dir: '~/w' }, storage: { cas: { disk: { path: '~/cas', max_size_bytes: 1 } } } };
    const config = resolveConfig({ role: 'all', file: { tree: file, source: 'f' } });
    expect(config.worker?.work_dir).toBe(path.join(homedir(), 'w'));
    expect((config.storage.cas as { disk: { path: string } }).disk.path).toBe(path.join(homedir(), 'cas'));
  });

  it('names the path of an impossible size', () => {
    expect(issuesOf({ storage: { cas: { disk: { path: '/d', max_size_bytes: '10XB' } } } })).toEqual([
      expect.stringMatching(/^storage\.cas\.disk\.max_size_bytes: expected a size like "10GiB"/),
    ]);
    expect(issuesOf({ storage: { cas: { memory: { max_size_bytes: 0 } } } })[0]).toMatch(/^storage\.cas\.memory\.max_size_bytes: .*must be positive/);
  });

  it('names the path of an unknown key, with the keys that are allowed there', () => {
    expect(issuesOf({ scheduler: { worker_leases: '1s' } })).toEqual(['scheduler.worker_leases: unknown key (expected one of tls, listen_address, worker_listen_address, worker_tokens_file, worker_tls, worker_lease, allow_ac_updates, digest_functions, compressors, max_concurrent_streams, max_receive_message_size, max_parked_upload_memory, max_pending_uploads, max_queued_actions_per_instance, max_queued_bytes_per_instance, max_worker_slots, state, worker_grace, operation_retention)']);
    expect(issuesOf({ storage: { cas: { s3: {} } } })[0]).toMatch(/^storage\.cas\.s3: unknown key \(expected one of disk, packed, memory, grpc/);
    // Planned sections are refused, not silently ignored; implemented ones are checked.
    expect(issuesOf({ scheduler: { tls: {} } })).toEqual(['scheduler.tls.cert_file: is required', 'scheduler.tls.key_file: is required']);
    expect(resolveConfig({ role: 'all', file: { tree: { scheduler: { state: 'memory' } }, source: 'a.yaml' } }).scheduler!.state).toBe('memory');
    const db = 'sqlite:/var/lib/bzutil/scheduler.db';
    expect(resolveConfig({ role: 'scheduler', file: { tree: { scheduler: { state: db } }, source: 'a.yaml' } }).scheduler!.state).toBe(db);
    const redis = 'redis://10.0.0.5:6379/2';
    expect(resolveConfig({ role: 'scheduler', file: { tree: { scheduler: { state: redis } }, source: 'a.yaml' } }).scheduler!.state).toBe(redis);
    expect(issuesOf({ scheduler: { state: 'postgres://localhost:5432' } })).toEqual(['scheduler.state: expected "memory", "sqlite:PATH" or "redis://HOST:PORT[/DB]"']);
    // Digest functions and compressors are lists of known names.
    const served = resolveConfig({ role: 'all', file: { tree: { apiserver: { digest_functions: ['sha256', 'blake3'], compressors: [] } }, source: 'a.yaml' } });
    expect([served.apiserver!.digest_functions, served.apiserver!.compressors]).toEqual([['sha256', 'blake3'], []]);
    expect(issuesOf({ scheduler: { digest_functions: ['crc32'] } })[0]).toMatch(/^scheduler\.digest_functions\.0: /);
    expect(issuesOf({ apiserver: { digest_functions: [] } })).toHaveLength(1);
    expect(issuesOf({ storage: { cas: { compression: {} } } })).toEqual(['storage.cas.compression: is planned but not supported yet']);
    expect(issuesOf({ storage: { cas: { sharding: {} } } })).toEqual(['storage.cas.sharding.shards: is required']);
    expect(issuesOf({ storage: { cas: { sharding: { shards: [{ weight: 0, backend: { memory: { max_size_bytes: 1 } } }] } } } })).toEqual(['storage.cas.sharding.shards.0.weight: must be > 0']);
    expect(issuesOf({ auth: { tokens: 'x' } })).toEqual(['auth.tokens: unknown key (expected one of tokens_file, jwt)']);
    expect(issuesOf({ auth: { jwt: {} } })).toEqual(['auth.jwt.jwks: is required']);
  });

  it('accepts storage.action_cache.redis and names the path of a bad one', () => {
    const resolved = resolveConfig({ role: 'apiserver', file: { tree: { storage: { action_cache: { redis: { url: 'redis://cache:6379/2', ttl: '60m' } } } }, source: 'a.yaml' } });
    expect(resolved.storage.action_cache).toEqual({ redis: { url: 'redis://cache:6379/2', ttl: '1h' } });
    expect(issuesOf({ storage: { action_cache: { redis: { url: 'http://cache' } } } })).toEqual([
      'storage.action_cache.redis.url: expected a URL like "redis://host:6379" (redis://[:password@]host:port[/db], rediss:// for TLS)',
    ]);
    expect(issuesOf({ storage: { action_cache: { redis: {} } } })).toEqual(['storage.action_cache.redis.url: is required']);
    // Redis holds action results only: the CAS refuses it like any unknown kind.
    expect(issuesOf({ storage: { cas: { redis: { url: 'redis://cache:6379' } } } })[0]).toMatch(/^storage\.cas\.redis: unknown key/);
    // Blob store trees are still checked as before under action_cache.
    expect(issuesOf({ storage: { action_cache: { disk: { max_size_bytes: 1 } } } })).toEqual(['storage.action_cache.disk.path: is required']);
  });

  it('names the path of a wrong type, a missing key and a node with two kinds', () => {
    expect(issuesOf({ worker: { slots: 'many' } })).toEqual(['worker.slots: must be integer']);
    expect(issuesOf({ storage: { cas: { disk: { max_size_bytes: 1 } } } })).toEqual(['storage.cas.disk.path: is required']);
    expect(issuesOf({ storage: { cas: { memory: { max_size_bytes: 1 }, grpc: { address: 'a:1' } } } })[0]).toMatch(/^storage\.cas: expected exactly one store kind/);
    expect(issuesOf({ scheduler: { listen_address: 'nowhere' } })).toEqual(['scheduler.listen_address: expected an address like "127.0.0.1:9099"']);
  });

  it('reports every bad key at once', () => {
    expect(issuesOf({ log_level: 'loud', apiserver: { upload_idle_timeout: 'soon' } }).map((l) => l.split(':')[0])).toEqual(['log_level', 'apiserver.upload_idle_timeout']);
  });

  it('refuses sections the role does not read', () => {
    expect(issuesOf({ apiserver: {} }, 'worker')).toEqual([expect.stringMatching(/^apiserver: is not used by "serve worker"/)]);
    expect(issuesOf({ storage: { action_cache: { memory: { max_size_bytes: 1 } } } }, 'worker')).toEqual(['storage.action_cache: is not used by "serve worker"']);
    expect(issuesOf({ worker: { scheduler_address: 'h:1' } }, 'all')[0]).toMatch(/^worker\.scheduler_address: is not used by "serve all"/);
  });

  it('refuses a flag that makes the tree invalid, and a worker without slots', () => {
    expect(() => resolveConfig({ role: 'worker', overrides: { worker: { slots: 0 } } })).toThrow(/worker\.slots: must be at least 1/);
  });
});

describe('readConfigFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(tmpdir(), 'bzutil-config-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('reads YAML and JSON alike', async () => {
    await fs.writeFile(path.join(dir, 'a.yaml'), 'scheduler:\n  worker_lease: 10s # comment\n');
    await fs.writeFile(path.join(dir, 'a.json'), '{ "scheduler": { "worker_lease": "10s" } }');
    expect(await readConfigFile(path.join(dir, 'a.yaml'))).toEqual({ scheduler: { worker_lease: '10s' } });
    expect(await readConfigFile(path.join(dir, 'a.json'))).toEqual({ scheduler: { worker_lease: '10s' } });
  });

  it('reports a missing file and a syntax error as configuration errors', async () => {
    await fs.writeFile(path.join(dir, 'bad.yaml'), 'scheduler: [unclosed\n');
    await expect(readConfigFile(path.join(dir, 'missing.yaml'))).rejects.toThrow(/cannot be read: ENOENT/);
    await expect(readConfigFile(path.join(dir, 'bad.yaml'))).rejects.toBeInstanceOf(ConfigError);
  });

  it('takes an empty file as an empty tree, and refuses a file that is not a mapping', async () => {
    await fs.writeFile(path.join(dir, 'empty.yaml'), '# nothing\n');
    expect(await readConfigFile(path.join(dir, 'empty.yaml'))).toEqual({});
    expect(validateConfigTree(['a'])).toEqual([{ path: '(top level)', message: 'must be object' }]);
  });
});

describe('examples/serve-all.yaml', () => {
  it('validates and resolves to exactly the flag-less serve all tree', async () => {
    const saved = process.env.XDG_CACHE_HOME;
    delete process.env.XDG_CACHE_HOME; // the example spells the paths under ~/.cache
    try {
      const tree = await readConfigFile(path.join(__dirname, '../../../examples/serve-all.yaml'));
      const fromFile: ResolvedConfig = resolveConfig({ role: 'all', file: { tree, source: 'examples/serve-all.yaml' } });
      expect(fromFile).toEqual(resolveConfig({ role: 'all' }));
    } finally {
      if (saved !== undefined) process.env.XDG_CACHE_HOME = saved;
    }
  });
});

describe('worker port credentials', () => {
  const tree = (scheduler: Record<string, unknown>) => ({ role: 'scheduler' as const, file: { tree: { scheduler }, source: 'w.yaml' } });

  it('refuses a non-loopback worker port without worker tokens or worker certificates', () => {
    expect(() => resolveConfig(tree({ worker_listen_address: '0.0.0.0:9098' }))).toThrow(/scheduler\.worker_listen_address: 0\.0\.0\.0:9098 is not a loopback address, so workers must authenticate/);
  });

  it('accepts it with a worker token file, or with a client CA on the worker port or the client port', () => {
    expect(resolveConfig(tree({ worker_listen_address: '0.0.0.0:9098', worker_tokens_file: '/etc/bzutil/workers.yaml' })).scheduler!.worker_tokens_file).toBe('/etc/bzutil/workers.yaml');
    const tls = { cert_file: 'c.pem', key_file: 'k.pem', client_ca_file: 'ca.pem' };
    expect(() => resolveConfig(tree({ worker_listen_address: '10.0.0.5:9098', worker_tls: tls }))).not.toThrow();
    expect(() => resolveConfig(tree({ worker_listen_address: '10.0.0.5:9098', tls }))).not.toThrow();
    expect(() => resolveConfig(tree({ worker_listen_address: '10.0.0.5:9098', tls: { cert_file: 'c.pem', key_file: 'k.pem' } }))).toThrow(/workers must authenticate/);
  });

  it('needs nothing on loopback', () => {
    expect(() => resolveConfig(tree({ worker_listen_address: '127.0.0.1:9098' }))).not.toThrow();
  });
});

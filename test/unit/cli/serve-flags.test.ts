import { describe, expect, it } from 'vitest';
import { flagOverrides, formatConfig, resolveServeConfig } from '../../../src/lib/cli/serve-overrides.js';
import { parseDurationMs, parseSizeBytes } from '../../../src/lib/util/units.js';
import { unsharedActionCacheWarning } from '../../../src/lib/config/create-storage.js';
import { resolveConfig } from '../../../src/lib/config/resolve-config.js';

describe('parseSizeBytes', () => {
  it('reads plain bytes and binary units in any case', () => {
    expect(parseSizeBytes('4096')).toBe(4096);
    expect(parseSizeBytes('64M')).toBe(64 * 1024 * 1024);
    expect(parseSizeBytes('1.5GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseSizeBytes(' 10g ')).toBe(10 * 1024 ** 3);
    expect(parseSizeBytes('2T')).toBe(2 * 1024 ** 4);
  });

  it('refuses zero unless allowed, and anything that is not a size', () => {
    expect(() => parseSizeBytes('0')).toThrow(/must be positive/);
    expect(parseSizeBytes('0', { allowZero: true })).toBe(0);
    expect(parseSizeBytes('0M', { allowZero: true })).toBe(0);
    for (const bad of ['', 'abc', '-1G', '10X', '1e3']) expect(() => parseSizeBytes(bad, { allowZero: true })).toThrow(/Invalid size/);
  });
});

describe('parseDurationMs', () => {
  it('reads ms, s, m and h, and bare numbers as seconds', () => {
    expect(parseDurationMs('500ms')).toBe(500);
    expect(parseDurationMs('30s')).toBe(30_000);
    expect(parseDurationMs('2')).toBe(2_000);
    expect(parseDurationMs('5m')).toBe(300_000);
    expect(parseDurationMs('1h')).toBe(3_600_000);
  });

  it('refuses zero and malformed durations', () => {
    expect(() => parseDurationMs('0s')).toThrow(/must be positive/);
    expect(() => parseDurationMs('soon')).toThrow(/Invalid duration/);
  });
});

describe('flagOverrides', () => {
  it('turns each flag into one key of the config tree, and sets nothing for flags not given', () => {
    expect(flagOverrides('all', {})).toEqual({});
    expect(flagOverrides('all', { apiserver_listen: '127.0.0.1:0', scheduler_listen: '127.0.0.1:1', worker_lease: '5s', slots: 2, log_level: 'warn' })).toEqual({
      apiserver: { listen_address: '127.0.0.1:0' },
      scheduler: { listen_address: '127.0.0.1:1', worker_lease: '5s' },
      worker: { slots: 2 },
      log_level: 'warn',
    });
    expect(flagOverrides('apiserver', { listen: '127.0.0.1:0' })).toEqual({ apiserver: { listen_address: '127.0.0.1:0' } });
    expect(flagOverrides('worker', { scheduler: 'h:1', platform: ['a=b', 'a=c', 'd=e'] })).toEqual({
      worker: { scheduler_address: 'h:1', platform: { a: ['b', 'c'], d: ['e'] } },
    });
  });

  it('maps repeated --asset_allow to asset.allow on the roles that serve Remote Asset', () => {
    expect(flagOverrides('all', { asset_allow: ['http://127.0.0.1:*', 'https://mirror.internal/*'] })).toMatchObject({
      asset: { allow: ['http://127.0.0.1:*', 'https://mirror.internal/*'] },
    });
    expect(flagOverrides('worker', { asset_allow: ['http://x/*'] }).asset).toBeUndefined();
  });

  it('maps the security flags: --allow_ac_updates to each served section, --worker_listen and --max_worker_slots to the scheduler', () => {
    expect(flagOverrides('all', { allow_ac_updates: true })).toMatchObject({ apiserver: { allow_ac_updates: true }, scheduler: { allow_ac_updates: true } });
    expect(flagOverrides('apiserver', { allow_ac_updates: true })).toMatchObject({ apiserver: { allow_ac_updates: true } });
    expect(flagOverrides('apiserver', { allow_ac_updates: true }).scheduler).toBeUndefined();
    expect(flagOverrides('scheduler', { allow_ac_updates: true }).apiserver).toBeUndefined();
    expect(flagOverrides('all', { allow_ac_updates: false })).toEqual({});
    const tls = { cert_file: 'c.pem', key_file: 'k.pem', client_ca_file: 'ca.pem' };
    expect(flagOverrides('all', { tls_cert: 'c.pem', tls_key: 'k.pem', tls_client_ca: 'ca.pem' })).toMatchObject({ apiserver: { tls }, scheduler: { tls } });
    expect(flagOverrides('apiserver', { tls_cert: 'c.pem', tls_key: 'k.pem' })).toEqual({ apiserver: { tls: { cert_file: 'c.pem', key_file: 'k.pem' } } });
    expect(() => flagOverrides('scheduler', { tls_cert: 'c.pem' })).toThrow(/--tls_cert and --tls_key go together/);
    expect(flagOverrides('scheduler', { worker_listen: '10.0.0.2:9098', max_worker_slots: 8 })).toMatchObject({
      scheduler: { worker_listen_address: '10.0.0.2:9098', max_worker_slots: 8 },
    });
  });

  it('keeps the scheduler state with the storage (serve all) or in --data_dir (serve scheduler), unless --state says where', () => {
    expect(flagOverrides('all', { storage_dir: '/s' }).scheduler?.state).toBe('sqlite:/s/scheduler.db');
    expect(flagOverrides('all', { in_memory: true }).scheduler?.state).toBe('memory');
    expect(flagOverrides('all', { in_memory: true, state: 'sqlite:/x.db' }).scheduler?.state).toBe('sqlite:/x.db');
    expect(flagOverrides('scheduler', { data_dir: '/d' }).scheduler?.state).toBe('sqlite:/d/scheduler.db');
    expect(flagOverrides('scheduler', { data_dir: '/d', state: 'memory' }).scheduler?.state).toBe('memory');
    expect(flagOverrides('scheduler', { worker_grace: '2s', operation_retention: '10m' }).scheduler).toMatchObject({ worker_grace: '2s', operation_retention: '10m' });
    expect(() => flagOverrides('scheduler', { worker_grace: 'soon' })).toThrow(/--worker_grace/);
  });

  it('sets http.listen_address from --http_listen and shutdown_grace_period from --shutdown_grace_period', () => {
    expect(flagOverrides('scheduler', { http_listen: '127.0.0.1:0', shutdown_grace_period: '5s' })).toEqual({
      http: { listen_address: '127.0.0.1:0' },
      shutdown_grace_period: '5s',
    });
    expect(flagOverrides('worker', { http_listen: '' })).toEqual({ http: { listen_address: '' } });
    expect(() => flagOverrides('all', { shutdown_grace_period: 'later' })).toThrow(/--shutdown_grace_period/);
  });

  it('sets the storage subtree from the storage flags, or to a remote apiserver from --cas', () => {
    expect(flagOverrides('apiserver', { in_memory: true }).storage).toEqual({
      cas: { memory: { max_size_bytes: 1024 ** 3 } },
      action_cache: { memory: { max_size_bytes: 64 * 1024 ** 2 } },
      asset: { memory: { max_size_bytes: 64 * 1024 ** 2 } },
    });
    expect(flagOverrides('all', { storage_dir: '/s', memory_cache: '0', max_size: '32G' }).storage).toEqual({
      cas: { disk: { path: '/s/cas', max_size_bytes: 32 * 1024 ** 3 } },
      action_cache: { disk: { path: '/s/ac', max_size_bytes: 2 * 1024 ** 3 } },
      asset: { disk: { path: '/s/asset', max_size_bytes: 64 * 1024 ** 2 } },
    });
    expect(flagOverrides('scheduler', { cas: 'a:1' }).storage).toEqual({ cas: { grpc: { address: 'a:1' } }, action_cache: { grpc: { address: 'a:1' } } });
    expect(flagOverrides('worker', { cas: 'a:1' }).storage).toEqual({ cas: { grpc: { address: 'a:1' } } });
  });

  it('shards the CAS over several --cas addresses, keyed by address, and sets the action cache from --ac', () => {
    const grpcShard = (address: string) => ({ weight: 1, backend: { grpc: { address } } });
    expect(flagOverrides('worker', { cas: 'a:12100,b:12100' }).storage).toEqual({ cas: { sharding: { shards: [grpcShard('a:12100'), grpcShard('b:12100')] } } });
    expect(flagOverrides('scheduler', { cas: 'a:12100, b:12100', ac: 'redis://r:6379/1' }).storage).toEqual({
      cas: { sharding: { shards: [grpcShard('a:12100'), grpcShard('b:12100')] } },
      action_cache: { redis: { url: 'redis://r:6379/1' } },
    });
    // Without --ac the scheduler falls back to the first apiserver's action cache, and says why that is uneven.
    const alone = flagOverrides('scheduler', { cas: 'a:12100,b:12100' }).storage!;
    expect(alone.action_cache).toEqual({ grpc: { address: 'a:12100' } });
    expect(unsharedActionCacheWarning({ cas: alone.cas!, action_cache: alone.action_cache })).toMatch(/2 shards but the action cache is not shared.*--ac redis:\/\//);
    expect(unsharedActionCacheWarning({ cas: alone.cas!, action_cache: { redis: { url: 'redis://r:6379' } } })).toBeUndefined();
    expect(unsharedActionCacheWarning({ cas: { grpc: { address: 'a:1' } }, action_cache: { grpc: { address: 'a:1' } } })).toBeUndefined();
    // --ac alone replaces only the action cache of the apiserver's tree.
    expect(flagOverrides('apiserver', { ac: 'redis://r:6379' }).storage).toEqual({ action_cache: { redis: { url: 'redis://r:6379' } } });
    const resolved = resolveConfig({ role: 'apiserver', overrides: flagOverrides('apiserver', { ac: 'redis://r:6379', in_memory: true }) });
    expect(resolved.storage).toEqual({
      cas: { memory: { max_size_bytes: '1GiB' } },
      action_cache: { redis: { url: 'redis://r:6379' } },
      asset: { memory: { max_size_bytes: '64MiB' } },
    });
    expect(flagOverrides('apiserver', { ac: 'cas:12100' }).storage).toEqual({ action_cache: { grpc: { address: 'cas:12100' } } });
  });

  it('refuses a --cas list with an empty or repeated entry, and an --ac that is neither Redis nor an address', () => {
    expect(() => flagOverrides('worker', { cas: 'a:1,,b:1' })).toThrow(/^Invalid --cas: .*empty entry/);
    expect(() => flagOverrides('worker', { cas: 'a:1,a:1' })).toThrow(/^Invalid --cas: "a:1" is given twice/);
    const err = (() => {
      try {
        flagOverrides('apiserver', { ac: 'http://:secret@cache' });
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected a usage error');
    })();
    expect(err.message).toMatch(/^Invalid --ac: expected redis:\/\//);
    expect(err.message).not.toContain('secret');
  });

  it('prints the configuration with Redis passwords redacted', () => {
    const resolved = resolveConfig({ role: 'scheduler', overrides: flagOverrides('scheduler', { cas: 'a:1,b:1', ac: 'redis://:hunter2@r:6379/0' }) });
    const printed = formatConfig(resolved);
    expect(printed).not.toContain('hunter2');
    expect(JSON.parse(printed).storage.action_cache).toEqual({ redis: { url: 'redis://:***@r:6379/0' } });
    // The tree the servers start from keeps the password.
    expect(resolved.storage.action_cache).toEqual({ redis: { url: 'redis://:hunter2@r:6379/0' } });
  });

  it('names the flag of a bad value', () => {
    expect(() => flagOverrides('all', { max_size: 'huge' })).toThrow(/^Invalid --max_size: Invalid size "huge"/);
    expect(() => flagOverrides('all', { worker_lease: 'soon' })).toThrow(/^Invalid --worker_lease/);
    expect(() => flagOverrides('all', { platform: ['novalue'] })).toThrow(/--platform/);
  });
});

describe('formatConfig (--print_config)', () => {
  it('shows --state redis:// with its password redacted', async () => {
    const config = await resolveServeConfig('scheduler', { state: 'redis://bzutil:hunter2@10.0.0.5:6379/1', in_memory: false } as Parameters<typeof resolveServeConfig>[1]);
    expect(config.scheduler!.state).toBe('redis://bzutil:hunter2@10.0.0.5:6379/1');
    const printed = formatConfig(config);
    expect(printed).not.toContain('hunter2');
    expect(JSON.parse(printed).scheduler.state).toBe('redis://bzutil:***@10.0.0.5:6379/1');
  });
});

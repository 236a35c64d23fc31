import { describe, expect, it } from 'vitest';
import { flagOverrides } from '../../../src/lib/cli/serve-overrides.js';
import { ConfigError } from '../../../src/lib/config/config.js';
import { resolveConfig } from '../../../src/lib/config/resolve-config.js';
import { validateConfigTree } from '../../../src/lib/config/validate-config.js';

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('apiserver.processes', () => {
  it('is 1 unless set; --processes sets it on serve apiserver', () => {
    expect(resolveConfig({ role: 'apiserver' }).apiserver!.processes).toBe(1);
    expect(flagOverrides('apiserver', { processes: 2 })).toEqual({ apiserver: { processes: 2 } });
    const config = resolveConfig({ role: 'apiserver', overrides: flagOverrides('apiserver', { processes: 4, storage_dir: '/var/cache/bzutil' }) });
    expect(config.apiserver!.processes).toBe(4);
  });

  it('is refused below 1 by the schema', () => {
    expect(validateConfigTree({ apiserver: { processes: 0 } }).map((i) => i.path)).toContain('apiserver.processes');
  });

  it('is refused on serve all, which runs one process', () => {
    const message = refusal(() => resolveConfig({ role: 'all', file: { source: 'c.yaml', tree: { apiserver: { processes: 2 } } } }));
    expect(message).toMatch(/apiserver\.processes: is only for "serve apiserver"/);
  });

  it('is refused with a memory store anywhere in the storage tree (each process would have its own) or a packed one', () => {
    const inMemory = refusal(() => resolveConfig({ role: 'apiserver', overrides: flagOverrides('apiserver', { processes: 2, in_memory: true }) }));
    expect(inMemory).toMatch(/apiserver\.processes: needs stores on disk, but storage\.cas\.memory is in memory/);
    const tree = { storage: { cas: { read_caching: { slow: { disk: { path: '/d', max_size_bytes: '1G' } }, fast: { memory: { max_size_bytes: '1G' } } } }, action_cache: { disk: { path: '/a', max_size_bytes: '1G' } } } };
    const nested = refusal(() => resolveConfig({ role: 'apiserver', file: { source: 'c.yaml', tree }, overrides: { apiserver: { processes: 2 } } }));
    expect(nested).toMatch(/storage\.cas\.read_caching\.fast\.memory/);
    const packedTree = { storage: { ...tree.storage, cas: { packed: { path: '/p', max_size_bytes: '1G', backend: tree.storage.cas.read_caching.slow } } } };
    const packed = refusal(() => resolveConfig({ role: 'apiserver', file: { source: 'c.yaml', tree: packedTree }, overrides: { apiserver: { processes: 2 } } }));
    expect(packed).toMatch(/apiserver\.processes: cannot share storage\.cas\.packed/);
    expect(resolveConfig({ role: 'apiserver', file: { source: 'c.yaml', tree: { storage: { ...tree.storage, cas: tree.storage.cas.read_caching.slow } } }, overrides: { apiserver: { processes: 2 } } }).apiserver!.processes).toBe(2);
  });
});

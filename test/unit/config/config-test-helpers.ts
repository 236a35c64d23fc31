import { expect } from 'vitest';
import { ConfigError, type ServeRole } from '../../../src/lib/config/config.js';
import { resolveConfig } from '../../../src/lib/config/resolve-config.js';

/** The issues of resolving `tree` as a config file, as "path: message" lines. */
export function issuesOf(tree: unknown, role: ServeRole = 'all'): string[] {
  try {
    resolveConfig({ role, file: { tree, source: 'test.yaml' } });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected the configuration to be refused');
}

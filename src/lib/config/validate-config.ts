/**
 * Validates a configuration tree against schema/bzutil-config.schema.json with Ajv (its code
 * generated from the schema at build time), and turns Ajv's errors into `path: message` issues
 * naming the key (`storage.cas.disk.max_size_bytes: expected a size like "10GiB"`). Sizes and durations are checked by two keywords of ours (`x-size`, `x-duration`)
 * that parse them with lib/util/units and rewrite them in canonical form ("10GiB", "30s"), so that
 * two trees meaning the same thing print the same. `x-expected` and `x-planned` are annotations: the
 * wording of the error for a node, and the keys reserved for features not built yet.
 */
import { createRequire } from 'node:module';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { formatDurationMs, formatSizeBytes, parseDurationMs, parseSizeBytes } from '../util/units.js';
import type { ConfigIssue } from './config.js';

/** schema/ at the package root: three levels up from both src/lib/config and dist/lib/config. */
export const CONFIG_SCHEMA_URL = new URL('../../../schema/bzutil-config.schema.json', import.meta.url);

/** What the generated validator calls for `x-size` and `x-duration`: the canonical text, or a throw with the reason. */
interface NormalizingKeywords {
  size(value: string | number, allowZero: boolean): string;
  duration(value: string | number, allowZero: boolean): string;
}

const keywords: NormalizingKeywords = {
  size: (value, allowZero) => formatSizeBytes(parseSizeBytes(value, { allowZero })),
  duration: (value, allowZero) => {
    if (typeof value !== 'string') throw new TypeError('not a string');
    return formatDurationMs(parseDurationMs(value, { allowZero }));
  },
};

let compiled: ValidateFunction | undefined;

/**
 * The schema's validator, generated at build time by scripts/gen-config-validator.mjs (Ajv
 * standalone code; compiling the schema at start-up cost a few hundred milliseconds).
 */
function validator(): ValidateFunction {
  if (compiled) return compiled;
  const create = createRequire(import.meta.url)('./generated/config-validator.cjs') as (k: NormalizingKeywords) => ValidateFunction;
  compiled = create(keywords);
  return compiled;
}

/**
 * Checks `tree` in place (sizes and durations are rewritten in canonical form) and returns its
 * issues, one per key, in document order; empty when valid.
 */
export function validateConfigTree(tree: unknown): ConfigIssue[] {
  const validate = validator();
  if (validate(tree)) return [];
  const issues = new Map<string, string>();
  for (const error of validate.errors ?? []) {
    const issue = toIssue(error);
    if (issue && !issues.has(issue.path)) issues.set(issue.path, issue.message);
  }
  return [...issues].map(([path, message]) => ({ path, message }));
}

function toIssue(error: ErrorObject): ConfigIssue | undefined {
  const base = error.instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const at = (...more: string[]) => [...base, ...more].join('.') || '(top level)';
  const expected = (error.parentSchema as { 'x-expected'?: string } | undefined)?.['x-expected'];
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String((error.params as { additionalProperty: string }).additionalProperty);
      const parent = error.parentSchema as { properties?: object; 'x-planned'?: string[] };
      if (parent['x-planned']?.includes(key)) return { path: at(key), message: 'is planned but not supported yet' };
      const allowed = Object.keys(parent.properties ?? {});
      return { path: at(key), message: `unknown key${allowed.length ? ` (expected one of ${allowed.join(', ')})` : ''}` };
    }
    case 'required':
      return { path: at(String((error.params as { missingProperty: string }).missingProperty)), message: 'is required' };
    case 'x-size':
      return { path: at(), message: `expected a size like "10GiB" (${error.message})` };
    case 'x-duration':
      return { path: at(), message: `expected a duration like "30s" (${error.message})` };
    case 'anyOf':
    case 'if':
      return undefined; // its branches' errors say more
    default:
      if (expected) return { path: at(), message: `expected ${expected}` };
      return { path: at(), message: error.message ?? `fails ${error.keyword}` };
  }
}

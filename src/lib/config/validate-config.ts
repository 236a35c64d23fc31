/**
 * Validates a configuration tree against schema/bzutil-config.schema.json with Ajv, and turns Ajv's
 * errors into `path: message` issues naming the key (`storage.cas.disk.max_size_bytes: expected a size
 * like "10GiB"`). Sizes and durations are checked by two keywords of ours (`x-size`, `x-duration`)
 * that parse them with lib/util/units and rewrite them in canonical form ("10GiB", "30s"), so that
 * two trees meaning the same thing print the same. `x-expected` and `x-planned` are annotations: the
 * wording of the error for a node, and the keys reserved for features not built yet.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type FuncKeywordDefinition, type ValidateFunction } from 'ajv';
import { formatDurationMs, formatSizeBytes, parseDurationMs, parseSizeBytes } from '../util/units.js';
import type { ConfigIssue } from './config.js';

/** schema/ at the package root: three levels up from both src/lib/config and dist/lib/config. */
export const CONFIG_SCHEMA_URL = new URL('../../../schema/bzutil-config.schema.json', import.meta.url);

let compiled: ValidateFunction | undefined;

function validator(): ValidateFunction {
  if (compiled) return compiled;
  const schema = JSON.parse(readFileSync(CONFIG_SCHEMA_URL, 'utf8')) as Record<string, unknown>;
  const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
  ajv.addKeyword({ keyword: 'x-expected', schemaType: 'string' });
  // Keys reserved for features not built yet: refused like unknown keys, but said so.
  ajv.addKeyword({ keyword: 'x-planned', schemaType: 'array' });
  ajv.addKeyword(normalizingKeyword('x-size', (value, allowZero) => formatSizeBytes(parseSizeBytes(value as string | number, { allowZero }))));
  ajv.addKeyword(normalizingKeyword('x-duration', (value, allowZero) => {
    if (typeof value !== 'string') throw new TypeError('not a string');
    return formatDurationMs(parseDurationMs(value, { allowZero }));
  }));
  compiled = ajv.compile(schema);
  return compiled;
}

/** A keyword whose value is "positive" or "non-negative" and which rewrites valid data in canonical form. */
function normalizingKeyword(keyword: string, canonical: (value: unknown, allowZero: boolean) => string): FuncKeywordDefinition {
  return {
    keyword,
    schemaType: 'string',
    modifying: true,
    errors: true,
    validate: function check(bound: string, data: unknown, _parentSchema: unknown, cxt?: { parentData: unknown; parentDataProperty: string | number }): boolean {
      if (typeof data !== 'string' && typeof data !== 'number') return true; // `type` reports it
      try {
        const value = canonical(data, bound === 'non-negative');
        if (cxt) (cxt.parentData as Record<string | number, unknown>)[cxt.parentDataProperty] = value;
        return true;
      } catch (err) {
        (check as unknown as { errors: Partial<ErrorObject>[] }).errors = [{ keyword, message: (err as Error).message, params: {} }];
        return false;
      }
    },
  };
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

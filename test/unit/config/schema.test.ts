import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BLOB_STORE_KINDS } from '../../../src/lib/blobstore/config.js';
import { ROLE_SECTIONS } from '../../../src/lib/config/config.js';
import { CONFIG_SCHEMA_URL } from '../../../src/lib/config/validate-config.js';

const schema = JSON.parse(readFileSync(CONFIG_SCHEMA_URL, 'utf8')) as {
  properties: Record<string, unknown>;
  $defs: { blob_store: { properties: Record<string, unknown> } };
};

describe('schema/bzutil-config.schema.json', () => {
  it('names exactly the store kinds createBlobStore builds', () => {
    expect(Object.keys(schema.$defs.blob_store.properties).sort()).toEqual([...BLOB_STORE_KINDS].sort());
  });

  it('has exactly the top-level sections the roles read', () => {
    const sections = new Set(Object.values(ROLE_SECTIONS).flatMap((r) => r.sections));
    expect(Object.keys(schema.properties).sort()).toEqual([...sections].sort());
  });
});

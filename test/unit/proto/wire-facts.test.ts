/**
 * Holds our own proto/ files to the public REAPI v2.12 wire format, row by row, as listed in
 * ../shared/reapi-wire-facts.tsv (every field, enum value, reserved range and RPC with its number,
 * type and cardinality). A mismatch here means Bazel and we would disagree on the wire.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const protoDir = join(repoRoot, 'proto');
const factsPath = process.env.BZUTIL_WIRE_FACTS ?? join(repoRoot, '../shared/reapi-wire-facts.tsv');

const PACKAGES: Record<string, string> = {
  'build/bazel/remote/execution/v2/remote_execution.proto': 'build.bazel.remote.execution.v2',
  'build/bazel/remote/asset/v1/remote_asset.proto': 'build.bazel.remote.asset.v1',
  'build/bazel/remote/logstream/v1/remote_logstream.proto': 'build.bazel.remote.logstream.v1',
  'build/bazel/semver/semver.proto': 'build.bazel.semver',
  'google/bytestream/bytestream.proto': 'google.bytestream',
  'google/longrunning/operations.proto': 'google.longrunning',
  'google/rpc/code.proto': 'google.rpc',
  'google/rpc/status.proto': 'google.rpc',
  'google/rpc/error_details.proto': 'google.rpc',
};

const SCALARS = new Set(['double', 'float', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64', 'bool', 'string', 'bytes']);

interface Fact {
  file: string;
  pkg: string;
  message: string;
  field: string;
  number: string;
  type: string;
  label: string;
}

function listProtos(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listProtos(join(dir, e.name)) : e.name.endsWith('.proto') ? [join(dir, e.name)] : [],
  );
}

function loadFacts(): Fact[] {
  const lines = readFileSync(factsPath, 'utf8').split('\n').filter((l) => l.trim() !== '');
  return lines.slice(1).map((line) => {
    const [file, message, field, number, type, label] = line.split('\t') as [string, string, string, string, string, string];
    const path = file.slice(file.indexOf(':') + 1);
    const pkg = PACKAGES[path];
    if (!pkg) throw new Error(`No package known for ${path}`);
    return { file: path, pkg, message, field, number, type, label };
  });
}

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(protoDir, target));
root.loadSync(listProtos(protoDir), { keepCase: true });
root.resolveAll();

function lookupType(fullName: string): protobuf.Type {
  const t = root.lookupType(fullName);
  expect(t, `message ${fullName}`).toBeTruthy();
  return t;
}

/** Resolves a type name as written in a .proto, relative to `context`, to its full name. */
function resolveName(context: protobuf.NamespaceBase, name: string): string {
  if (SCALARS.has(name)) return name;
  const found = context.lookup(name.replace(/^\./, ''), [protobuf.Type, protobuf.Enum]);
  if (!found) throw new Error(`Cannot resolve ${name} from ${context.fullName}`);
  return found.fullName.replace(/^\./, '');
}

function parseNumbers(text: string): number[] {
  return text.split(',').flatMap((part) => {
    const m = /^\s*(\d+)\s+to\s+(\d+)\s*$/.exec(part);
    if (m) {
      const out: number[] = [];
      for (let i = Number(m[1]); i <= Number(m[2]); i++) out.push(i);
      return out;
    }
    return [Number(part.trim())];
  });
}

function reservedNumbers(t: protobuf.Type): Set<number> {
  const out = new Set<number>();
  for (const r of t.reserved ?? []) {
    if (Array.isArray(r)) for (let i = r[0]!; i <= r[1]!; i++) out.add(i);
  }
  return out;
}

const facts = existsSync(factsPath) ? loadFacts() : [];

describe('proto/ against the REAPI v2.12 wire facts', () => {
  it('finds the wire-facts table', () => {
    expect(existsSync(factsPath), `expected ${factsPath}`).toBe(true);
    expect(facts.length).toBeGreaterThan(300);
  });

  it.each(facts.filter((f) => f.label === 'rpc').map((f) => [`${f.pkg}.${f.message}.${f.field}`, f] as const))('rpc %s', (_n, f) => {
    const service = root.lookupService(`${f.pkg}.${f.message}`);
    const method = service.methods[f.field];
    expect(method, `rpc ${f.field}`).toBeDefined();
    const [req, res] = f.type.split(' -> ') as [string, string];
    const reqStream = req.startsWith('stream ');
    const resStream = res.startsWith('stream ');
    expect(Boolean(method!.requestStream)).toBe(reqStream);
    expect(Boolean(method!.responseStream)).toBe(resStream);
    expect(resolveName(service.parent!, method!.requestType)).toBe(resolveName(service.parent!, req.replace('stream ', '')));
    expect(resolveName(service.parent!, method!.responseType)).toBe(resolveName(service.parent!, res.replace('stream ', '')));
  });

  it.each(facts.filter((f) => f.label === 'enum_value').map((f) => [`${f.pkg}.${f.message}.${f.field}`, f] as const))('enum value %s', (_n, f) => {
    const e = root.lookupEnum(`${f.pkg}.${f.message}`);
    expect(e.values[f.field], `${f.message}.${f.field}`).toBe(Number(f.number));
  });

  it.each(facts.filter((f) => f.label === 'reserved').map((f) => [`${f.pkg}.${f.message} ${f.number}`, f] as const))('reserved %s', (_n, f) => {
    const t = lookupType(`${f.pkg}.${f.message}`);
    const reserved = reservedNumbers(t);
    for (const n of parseNumbers(f.number)) expect(reserved.has(n), `number ${n} reserved in ${f.message}`).toBe(true);
  });

  it.each(facts.filter((f) => f.label === 'empty_message').map((f) => [`${f.pkg}.${f.message}`, f] as const))('empty message %s', (_n, f) => {
    const t = lookupType(`${f.pkg}.${f.message}`);
    expect(t.fieldsArray).toHaveLength(0);
  });

  const fieldFacts = facts.filter((f) => !['rpc', 'enum_value', 'reserved', 'empty_message'].includes(f.label));
  it.each(fieldFacts.map((f) => [`${f.pkg}.${f.message}.${f.field}`, f] as const))('field %s', (_n, f) => {
    const t = lookupType(`${f.pkg}.${f.message}`);
    const field = t.fields[f.field];
    expect(field, `field ${f.field}`).toBeDefined();
    expect(field!.id).toBe(Number(f.number));
    const deprecated = f.label.includes('(deprecated)');
    expect(Boolean(field!.options?.deprecated)).toBe(deprecated);
    const label = f.label.replace(' (deprecated)', '');
    if (label === 'map') {
      const m = /^map<\s*(\w+)\s*,\s*([\w.]+)\s*>$/.exec(f.type);
      expect(m).toBeTruthy();
      expect(field).toBeInstanceOf(protobuf.MapField);
      expect((field as protobuf.MapField).keyType).toBe(m![1]);
      expect(resolveName(t, field!.type)).toBe(resolveName(t, m![2]!));
      return;
    }
    expect(field).not.toBeInstanceOf(protobuf.MapField);
    expect(resolveName(t, field!.type)).toBe(resolveName(t, f.type));
    expect(field!.repeated).toBe(label === 'repeated');
    if (label.startsWith('oneof:')) {
      expect(field!.partOf?.name).toBe(label.slice('oneof:'.length));
    } else if (label === 'optional') {
      expect(field!.options?.proto3_optional ?? field!.partOf?.name?.startsWith('_')).toBeTruthy();
    } else {
      expect(field!.partOf).toBeFalsy();
    }
  });

  it('declares no field the wire format lacks in the messages it lists', () => {
    const listed = new Map<string, Set<string>>();
    for (const f of fieldFacts) {
      const key = `${f.pkg}.${f.message}`;
      if (!listed.has(key)) listed.set(key, new Set());
      listed.get(key)!.add(f.field);
    }
    const extra: string[] = [];
    for (const [name, fields] of listed) {
      for (const field of lookupType(name).fieldsArray) if (!fields.has(field.name)) extra.push(`${name}.${field.name}`);
    }
    expect(extra).toEqual([]);
  });
});

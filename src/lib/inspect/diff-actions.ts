/**
 * Why do two actions differ? The "why was this a cache miss?" question: two Actions have different
 * digests because some field of the Action, of its Command or of its input tree differs. This walks
 * them side by side and lists each difference: argv, each environment variable, platform
 * properties, working directory, outputs, timeout, do_not_cache, salt, and every input path whose
 * digest (or kind, or executable bit, or symlink target) differs, with both values.
 *
 * Input trees are compared top-down by digest: a subdirectory with the same digest on both sides is
 * not read at all, so a one-file change in a large tree costs one Directory read per level.
 */
import type { CasClient } from '../client/cas-client.js';
import type { Digest } from '../digest/digest.js';
import { reapi } from '../proto/index.js';
import { type LoadedAction, digestField, environmentOf, loadAction, outputPathsOf, platformOf, readMessage, timeoutMsOf } from './load-action.js';

/** One differing field: its name and both sides' values (undefined: unset on that side). */
export interface FieldDifference {
  field: string;
  left?: string;
  right?: string;
}

/** One differing input path; a side is undefined where the path does not exist. */
export interface InputDifference {
  path: string;
  left?: InputEntry;
  right?: InputEntry;
}

/** A file (`digest`, `executable`), a directory (`digest` of its Directory) or a symlink (`target`). */
export interface InputEntry {
  kind: 'file' | 'directory' | 'symlink';
  digest?: string;
  executable?: boolean;
  target?: string;
}

/** The `--json` result of `diff_actions`. */
export interface ActionDiff {
  left: string;
  right: string;
  identical: boolean;
  fields: FieldDifference[];
  inputs: InputDifference[];
}

/** Upper bound on input differences listed, so that two unrelated trees do not flood the terminal. */
export const MAX_INPUT_DIFFERENCES = 1000;

export async function diffActions(cas: CasClient, left: Digest, right: Digest): Promise<ActionDiff> {
  const result: ActionDiff = { left: left.toString(), right: right.toString(), identical: left.equals(right), fields: [], inputs: [] };
  if (result.identical) return result;
  const [a, b] = await Promise.all([loadAction(cas, left), loadAction(cas, right)]);
  result.fields = diffFields(a, b);
  if (!a.inputRootDigest.equals(b.inputRootDigest)) {
    const getDirectory = directoryReader(cas);
    await diffDirectories(getDirectory, a.inputRootDigest, b.inputRootDigest, '', result.inputs);
  }
  return result;
}

/** The Action and Command fields that differ, in a fixed order. */
export function diffFields(a: Pick<LoadedAction, 'action' | 'command'>, b: Pick<LoadedAction, 'action' | 'command'>): FieldDifference[] {
  const out: FieldDifference[] = [];
  const add = (field: string, l: string | undefined, r: string | undefined) => {
    if (l !== r) out.push(withSides(field, l, r));
  };
  add('argv', JSON.stringify(a.command.arguments ?? []), JSON.stringify(b.command.arguments ?? []));
  const envA = environmentOf(a.command);
  const envB = environmentOf(b.command);
  for (const name of [...new Set([...envA.keys(), ...envB.keys()])].sort()) add(`env ${name}`, envA.get(name), envB.get(name));
  const platA = new Set(platformOf(a));
  const platB = new Set(platformOf(b));
  const platNames = (s: Set<string>) => [...s].map((p) => p.slice(0, p.indexOf('=')));
  for (const name of [...new Set([...platNames(platA), ...platNames(platB)])].sort()) {
    const values = (s: Set<string>) => [...s].filter((p) => p.startsWith(`${name}=`)).map((p) => p.slice(name.length + 1)).join(',') || undefined;
    add(`platform ${name}`, values(platA), values(platB));
  }
  add('working_directory', a.command.workingDirectory || undefined, b.command.workingDirectory || undefined);
  add('outputs', JSON.stringify(outputPathsOf(a.command)), JSON.stringify(outputPathsOf(b.command)));
  add('output_node_properties', JSON.stringify(a.command.outputNodeProperties ?? []), JSON.stringify(b.command.outputNodeProperties ?? []));
  add('timeout', msText(timeoutMsOf(a.action)), msText(timeoutMsOf(b.action)));
  add('do_not_cache', String(a.action.doNotCache ?? false), String(b.action.doNotCache ?? false));
  add('salt', hexOrUndefined(a.action.salt), hexOrUndefined(b.action.salt));
  return out;
}

function withSides(field: string, left: string | undefined, right: string | undefined): FieldDifference {
  const d: FieldDifference = { field };
  if (left !== undefined) d.left = left;
  if (right !== undefined) d.right = right;
  return d;
}

function msText(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : `${ms / 1000}s`;
}

function hexOrUndefined(bytes: Uint8Array | null | undefined): string | undefined {
  return bytes && bytes.length > 0 ? Buffer.from(bytes).toString('hex') : undefined;
}

type DirectoryReader = (digest: Digest, path: string) => Promise<reapi.IDirectory>;

function directoryReader(cas: CasClient): DirectoryReader {
  const cache = new Map<string, Promise<reapi.IDirectory>>();
  return (digest, path) => {
    let dir = cache.get(digest.key);
    if (!dir) {
      dir = readMessage(cas, digest, reapi.Directory, `the input directory ${JSON.stringify(path || '.')}`);
      cache.set(digest.key, dir);
    }
    return dir;
  };
}

/** The entries of a Directory by name. */
function entriesOf(dir: reapi.IDirectory, like: Digest): Map<string, { entry: InputEntry; digest?: Digest }> {
  const out = new Map<string, { entry: InputEntry; digest?: Digest }>();
  for (const f of dir.files ?? []) {
    const d = digestField(f.digest, like, `file ${f.name}`);
    out.set(f.name ?? '', { entry: { kind: 'file', digest: d.toString(), executable: f.isExecutable ?? false } });
  }
  for (const s of dir.directories ?? []) {
    const d = digestField(s.digest, like, `directory ${s.name}`);
    out.set(s.name ?? '', { entry: { kind: 'directory', digest: d.toString() }, digest: d });
  }
  for (const l of dir.symlinks ?? []) out.set(l.name ?? '', { entry: { kind: 'symlink', target: l.target ?? '' } });
  return out;
}

function sameEntry(a: InputEntry, b: InputEntry): boolean {
  return a.kind === b.kind && a.digest === b.digest && (a.executable ?? false) === (b.executable ?? false) && a.target === b.target;
}

/**
 * Appends the differences between two Directory trees under `prefix`. Directories on both sides
 * are descended into; a directory on one side only is one difference (not every file under it).
 */
async function diffDirectories(read: DirectoryReader, left: Digest, right: Digest, prefix: string, out: InputDifference[]): Promise<void> {
  const [a, b] = await Promise.all([read(left, prefix), read(right, prefix)]);
  const ea = entriesOf(a, left);
  const eb = entriesOf(b, right);
  const names = [...new Set([...ea.keys(), ...eb.keys()])].sort();
  for (const name of names) {
    if (out.length >= MAX_INPUT_DIFFERENCES) return;
    const path = prefix ? `${prefix}/${name}` : name;
    const l = ea.get(name);
    const r = eb.get(name);
    if (l && r && sameEntry(l.entry, r.entry)) continue;
    if (l?.digest && r?.digest && l.entry.kind === 'directory' && r.entry.kind === 'directory') {
      await diffDirectories(read, l.digest, r.digest, path, out);
      continue;
    }
    const d: InputDifference = { path };
    if (l) d.left = l.entry;
    if (r) d.right = r.entry;
    out.push(d);
  }
}

/** The human form: one line per difference, `  field: left -> right`. */
export function formatActionDiff(diff: ActionDiff): string {
  if (diff.identical) return `The actions are the same: ${diff.left}\n`;
  const lines = [`Action ${diff.left} -> ${diff.right}`];
  if (diff.fields.length === 0 && diff.inputs.length === 0) {
    lines.push('  no difference in the command, the action fields or the inputs (the Actions differ in encoding or in fields bzutil does not compare)');
  }
  for (const f of diff.fields) lines.push(`  ${f.field}: ${f.left ?? '(unset)'} -> ${f.right ?? '(unset)'}`);
  for (const i of diff.inputs) lines.push(`  input ${i.path}: ${entryText(i.left)} -> ${entryText(i.right)}`);
  if (diff.inputs.length >= MAX_INPUT_DIFFERENCES) lines.push(`  ... (stopped after ${MAX_INPUT_DIFFERENCES} input differences)`);
  return lines.join('\n') + '\n';
}

function entryText(e: InputEntry | undefined): string {
  if (!e) return '(absent)';
  if (e.kind === 'symlink') return `symlink -> ${e.target}`;
  if (e.kind === 'directory') return `directory ${e.digest}`;
  return `${e.digest}${e.executable ? ' [x]' : ''}`;
}

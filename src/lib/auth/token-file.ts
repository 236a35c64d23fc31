/**
 * Opaque bearer tokens listed in a file (`--auth_tokens FILE`, `--worker_tokens FILE`), JSON or
 * YAML, each stored only as the SHA-256 hex of the token, so that the file reveals no credential:
 *
 *   {"tokens": [{"name": "ci", "sha256": "<hex>", "instances": ["main"], "permissions": ["cas.read", …]}]}
 *
 * The file is read at start and on `reload()` (SIGHUP); a reload that fails (unreadable, invalid)
 * keeps the previous tokens, so a typo never locks everyone out or lets everyone in.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { StatusError } from '../errors/status-error.js';
import type { Logger } from '../util/logger.js';
import type { Authenticator } from './authenticator.js';
import { isPermission, type Permission, PERMISSIONS, type Principal } from './principal.js';

/** One entry of the file as written. */
export interface TokenEntry {
  name: string;
  sha256: string;
  instances?: string[];
  permissions?: Permission[];
}

export interface TokenFile {
  tokens: TokenEntry[];
}

/** The SHA-256 hex of a token: what a token file stores. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A new random token (256 bits, base64url, prefixed `bzt_` so that scanners recognise it). */
export function generateToken(): string {
  return `bzt_${randomBytes(32).toString('base64url')}`;
}

/** A new token and the entry that grants it `permissions` on `instances`. */
export function createTokenEntry(opts: { name: string; instances: string[]; permissions: Permission[] }): { token: string; entry: TokenEntry } {
  const token = generateToken();
  return { token, entry: { name: opts.name, sha256: hashToken(token), instances: opts.instances, permissions: opts.permissions } };
}

/**
 * Checks a parsed token file; throws an Error listing every problem by its path
 * (`tokens[2].permissions[0]`). No secret can appear: the file holds hashes only.
 */
export function parseTokenFile(tree: unknown, opts: { requirePermissions?: boolean } = {}): Map<string, Principal> {
  const problems: string[] = [];
  const out = new Map<string, Principal>();
  const tokens = (tree as { tokens?: unknown } | null)?.tokens;
  if (typeof tree !== 'object' || tree === null || !Array.isArray(tokens)) throw new Error('expected an object with a "tokens" list');
  tokens.forEach((raw: unknown, i) => {
    const at = `tokens[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return void problems.push(`${at}: expected an object`);
    const e = raw as Record<string, unknown>;
    for (const key of Object.keys(e)) if (!['name', 'sha256', 'instances', 'permissions'].includes(key)) problems.push(`${at}.${key}: unknown key`);
    if (typeof e.name !== 'string' || e.name === '') problems.push(`${at}.name: expected a non-empty string`);
    const sha = typeof e.sha256 === 'string' ? e.sha256.toLowerCase() : undefined;
    if (sha === undefined || !/^[0-9a-f]{64}$/.test(sha)) problems.push(`${at}.sha256: expected 64 hex digits (the SHA-256 of the token)`);
    const instances = stringList(e.instances, `${at}.instances`, problems) ?? [];
    const permissions = stringList(e.permissions, `${at}.permissions`, problems) ?? [];
    if (opts.requirePermissions !== false && e.permissions === undefined) problems.push(`${at}.permissions: missing (among ${PERMISSIONS.join(', ')})`);
    permissions.forEach((p, j) => {
      if (!isPermission(p)) problems.push(`${at}.permissions[${j}]: ${JSON.stringify(p)} is not one of ${PERMISSIONS.join(', ')}`);
    });
    if (sha !== undefined && out.has(sha)) problems.push(`${at}.sha256: the same token is listed twice`);
    if (sha !== undefined && typeof e.name === 'string') {
      out.set(sha, { name: e.name, instances, permissions: new Set(permissions.filter(isPermission)) });
    }
  });
  if (problems.length > 0) throw new Error(problems.join('; '));
  return out;
}

function stringList(value: unknown, at: string, problems: string[]): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    problems.push(`${at}: expected a list of strings`);
    return undefined;
  }
  return value as string[];
}

/** Reads and checks a token file; the error names the file and what is wrong (never a token). */
export async function readTokenFile(file: string, opts: { requirePermissions?: boolean } = {}): Promise<Map<string, Principal>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`Failed to read the token file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const { parse: parseYaml } = await import('yaml'); // only processes with a token file load the YAML parser
  try {
    return parseTokenFile(parseYaml(text), opts);
  } catch (err) {
    throw new Error(`Invalid token file ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
}

export interface TokenFileAuthenticatorOptions {
  file: string;
  logger: Logger;
  /**
   * Whether every entry must list permissions. Worker token files (`--worker_tokens`) need none:
   * any listed token may act as a worker. @default true
   */
  requirePermissions?: boolean;
}

export class TokenFileAuthenticator implements Authenticator {
  private constructor(
    private readonly opts: TokenFileAuthenticatorOptions,
    private tokens: Map<string, Principal>,
  ) {}

  /** Reads the file; throws when it cannot be read or is invalid (nothing starts then). */
  static async open(opts: TokenFileAuthenticatorOptions): Promise<TokenFileAuthenticator> {
    return new TokenFileAuthenticator(opts, await readTokenFile(opts.file, opts));
  }

  /** How many tokens are loaded. */
  get size(): number {
    return this.tokens.size;
  }

  async authenticate(token: string): Promise<Principal> {
    const principal = this.tokens.get(hashToken(token));
    if (!principal) throw StatusError.unauthenticated('Invalid credentials: the token is not known');
    return principal;
  }

  async reload(): Promise<boolean> {
    try {
      this.tokens = await readTokenFile(this.opts.file, this.opts);
      this.opts.logger.info('Reloaded the token file', { tokens: this.tokens.size });
      return true;
    } catch (err) {
      this.opts.logger.error('Failed to reload the token file; still using the previous tokens', { error: (err as Error).message });
      return false;
    }
  }
}

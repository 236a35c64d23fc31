/**
 * JSON Web Tokens verified with `jose` against a JWKS (`--jwt_jwks`): a local file (re-read on
 * SIGHUP) or an http(s) URL (fetched and cached by jose, refetched when a token names an unknown
 * key). The credential's permissions and instances come from claims (by default `permissions` and
 * `instances`, each a list or a space-separated string); its name from `sub`.
 */
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, type JWTPayload, jwtVerify } from 'jose';
import { StatusError } from '../errors/status-error.js';
import type { Logger } from '../util/logger.js';
import type { Authenticator } from './authenticator.js';
import { isPermission, type Principal } from './principal.js';

export interface JwtSettings {
  /** A JWKS file, or an http:// or https:// URL serving one. */
  jwks: string;
  /** Required `iss`, when set. */
  issuer?: string;
  /** Required `aud`, when set. */
  audience?: string;
  /** @default "permissions" */
  permissionsClaim?: string;
  /** @default "instances" */
  instancesClaim?: string;
}

type KeySet = ReturnType<typeof createLocalJWKSet> | ReturnType<typeof createRemoteJWKSet>;

export function isJwksUrl(jwks: string): boolean {
  return /^https?:\/\//i.test(jwks);
}

export class JwtAuthenticator implements Authenticator {
  private constructor(
    private readonly settings: JwtSettings,
    private readonly logger: Logger,
    private keys: KeySet,
  ) {}

  /** Reads the JWKS file (a URL is fetched on first use); throws when the file is unusable. */
  static async open(settings: JwtSettings, logger: Logger): Promise<JwtAuthenticator> {
    return new JwtAuthenticator(settings, logger, await loadKeys(settings.jwks));
  }

  async authenticate(token: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keys, { issuer: this.settings.issuer, audience: this.settings.audience }));
    } catch (err) {
      throw StatusError.unauthenticated(`Invalid credentials: ${jwtProblem(err)}`);
    }
    return {
      name: typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : 'jwt',
      permissions: new Set(claimList(payload[this.settings.permissionsClaim ?? 'permissions']).filter(isPermission)),
      instances: claimList(payload[this.settings.instancesClaim ?? 'instances']),
    };
  }

  async reload(): Promise<boolean> {
    if (isJwksUrl(this.settings.jwks)) return true; // jose refetches a URL's keys itself
    try {
      this.keys = await loadKeys(this.settings.jwks);
      this.logger.info('Reloaded the JWKS file');
      return true;
    } catch (err) {
      this.logger.error('Failed to reload the JWKS file; still using the previous keys', { error: (err as Error).message });
      return false;
    }
  }
}

async function loadKeys(jwks: string): Promise<KeySet> {
  if (isJwksUrl(jwks)) return createRemoteJWKSet(new URL(jwks));
  let text: string;
  try {
    text = await readFile(jwks, 'utf8');
  } catch (err) {
    throw new Error(`Failed to read the JWKS file ${jwks}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  try {
    return createLocalJWKSet(JSON.parse(text));
  } catch (err) {
    throw new Error(`Invalid JWKS file ${jwks}: ${(err as Error).message.split('\n')[0]}`);
  }
}

/** Why verification failed, in words that carry no part of the token. */
function jwtProblem(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `the token's "${err.claim}" claim is not accepted`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return "the token's signature does not verify";
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'the token is signed with an unknown key';
  if (err instanceof joseErrors.JOSEError) return `the token is not a valid JWT (${err.code})`;
  return 'the token could not be verified';
}

function claimList(value: unknown): string[] {
  if (typeof value === 'string') return value.split(/\s+/).filter(Boolean);
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return [];
}

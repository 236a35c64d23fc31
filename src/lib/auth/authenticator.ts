/**
 * The one interface every way of checking a credential implements (token file, JWT), and the
 * parsing of the `authorization: Bearer …` header that carries it: what Bazel sends with
 * `--remote_header=Authorization=Bearer <token>` and bzutil's CLI with `--token`.
 */
import { StatusError } from '../errors/status-error.js';
import type { Principal } from './principal.js';

export interface Authenticator {
  /**
   * The principal `token` stands for. Throws UNAUTHENTICATED (a StatusError) for an unknown,
   * malformed or expired token; the message never contains the token.
   */
  authenticate(token: string): Promise<Principal>;
  /** Re-reads the authenticator's files (SIGHUP); on failure keeps the previous state and returns false. */
  reload?(): Promise<boolean>;
  /** Releases timers or connections. */
  close?(): void;
}

/** Longest token accepted: anything longer is refused before it is hashed or parsed. */
export const MAX_TOKEN_BYTES = 16 * 1024;

/**
 * The token of an `authorization` header value (`Bearer <token>`, scheme case-insensitive).
 * UNAUTHENTICATED when absent or of another form.
 */
export function bearerToken(header: string | undefined): string {
  if (header === undefined || header === '') {
    throw StatusError.unauthenticated('Missing credentials: send the header "authorization: Bearer <token>" (bzutil --token, Bazel --remote_header=Authorization=Bearer <token>)');
  }
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw StatusError.unauthenticated('Invalid credentials: the authorization header is not of the form "Bearer <token>"');
  if (Buffer.byteLength(m[1]!) > MAX_TOKEN_BYTES) throw StatusError.unauthenticated('Invalid credentials: the token is too long');
  return m[1]!;
}

/** A JWT is three base64url parts; anything else is an opaque token. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/**
 * Token file and JWT side by side: a token shaped like a JWT goes to `jwt`, any other to `opaque`.
 * Either may be absent; a token of the absent kind is refused as unknown.
 */
export class CombinedAuthenticator implements Authenticator {
  constructor(private readonly parts: { opaque?: Authenticator; jwt?: Authenticator }) {}

  authenticate(token: string): Promise<Principal> {
    const target = looksLikeJwt(token) && this.parts.jwt ? this.parts.jwt : this.parts.opaque;
    if (!target) return Promise.reject(StatusError.unauthenticated('Invalid credentials: the token is not known'));
    return target.authenticate(token);
  }

  async reload(): Promise<boolean> {
    const results = await Promise.all([this.parts.opaque?.reload?.() ?? true, this.parts.jwt?.reload?.() ?? true]);
    return results.every(Boolean);
  }

  close(): void {
    this.parts.opaque?.close?.();
    this.parts.jwt?.close?.();
  }
}

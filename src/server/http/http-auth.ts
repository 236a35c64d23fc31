/**
 * Authentication on the operator's HTTP port, with the same credentials as the gRPC ports (config
 * `auth`, `--auth_tokens`, `--jwt_jwks`). Without an authenticator nothing here runs and the port
 * stays open, as before.
 *
 * A credential arrives either as `Authorization: Bearer <token>` (curl, Prometheus'
 * `authorization` setting) or, for a browser, in the `bzutil_token` cookie that `POST /login` sets
 * after checking the token typed into its form: HttpOnly (page scripts cannot read it),
 * SameSite=Strict (other sites cannot make the browser send it) and Path=/. `POST /logout` clears
 * it. The header wins when both are present.
 *
 * What each path needs (lib/auth/principal.ts permissions; `admin` implies all):
 * - `/metrics`: `admin` (metrics span every instance);
 * - `/`, `/operation`, `/logs`: `operations.read` (the dashboard lists only the credential's instances);
 * - `/action`, `/command`, `/directory`, `/blob`: `operations.read` and `cas.read`;
 * - `/ac`: `operations.read` and `ac.read`.
 * The instance is the page's `?instance=` (or the operation name's); it must match the
 * credential's instance globs. Refusals answer 401 (no or bad credential; browsers get the login
 * form) or 403 (naming the missing permission); no message ever contains the token.
 */
import type { IncomingMessage } from 'node:http';
import { type Authenticator, bearerToken, MAX_TOKEN_BYTES } from '../../lib/auth/authenticator.js';
import { authorize, instanceGlobMatches, type Permission, type Principal } from '../../lib/auth/principal.js';
import { Code, StatusError, toStatusError } from '../../lib/errors/status-error.js';
import { parseOperationName } from '../../lib/scheduler/operation-names.js';
import { html, page } from './ui/html.js';

export const TOKEN_COOKIE = 'bzutil_token';

/** What a request may see once let through. */
export interface Access {
  /** Whether the caller may see operations of `instanceName` (everything without auth). */
  mayUseInstance(instanceName: string): boolean;
}

export const OPEN_ACCESS: Access = { mayUseInstance: () => true };

/** A refusal as the HTTP port answers it. */
export interface Refusal {
  status: 401 | 403;
  message: string;
}

/** Permissions each page needs, by its first path segment (see the top of this file). */
function requiredFor(first: string | undefined): Permission[][] | undefined {
  switch (first) {
    case 'metrics':
      return [['admin']];
    case undefined:
    case 'operation':
    case 'logs':
      return [['operations.read']];
    case 'action':
    case 'command':
    case 'directory':
    case 'blob':
      return [['operations.read'], ['cas.read']];
    case 'ac':
      return [['operations.read'], ['ac.read']];
    default:
      // Unknown paths: the 404 needs a credential too, so that nothing is told to strangers.
      return [['operations.read']];
  }
}

/** The instance a page is about, when it names one. */
function instanceOfUrl(url: URL): string | undefined {
  const first = url.pathname.split('/').filter(Boolean)[0];
  if (first === 'operation' || first === 'logs') {
    try {
      return parseOperationName(url.searchParams.get('name') ?? '').instanceName;
    } catch {
      return undefined; // the page itself answers 400 for a malformed name
    }
  }
  if (first === undefined || first === 'metrics') return undefined;
  return url.searchParams.get('instance') ?? '';
}

/** The cookie's token, if the request carries one. */
function cookieToken(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== TOKEN_COOKIE) continue;
    try {
      return decodeURIComponent(part.slice(eq + 1).trim()) || undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * Checks the request's credential against what `url` needs. Resolves to the caller's Access, or
 * to a Refusal; never throws for a bad credential.
 */
export async function checkHttpAccess(authenticator: Authenticator, req: IncomingMessage, url: URL): Promise<Access | Refusal> {
  let principal: Principal;
  try {
    const header = req.headers.authorization;
    const fromCookie = header === undefined ? cookieToken(req.headers.cookie) : undefined;
    if (fromCookie !== undefined && Buffer.byteLength(fromCookie) > MAX_TOKEN_BYTES) throw StatusError.unauthenticated('Invalid credentials: the token is too long');
    principal = await authenticator.authenticate(fromCookie ?? bearerToken(header));
  } catch (err) {
    return { status: 401, message: safeMessage(err) };
  }
  const instance = instanceOfUrl(url);
  try {
    for (const anyOf of requiredFor(url.pathname.split('/').filter(Boolean)[0]) ?? []) authorize(principal, anyOf, instance);
  } catch (err) {
    return { status: 403, message: safeMessage(err) };
  }
  return { mayUseInstance: (name) => principal.instances.some((p) => instanceGlobMatches(p, name)) };
}

/** The message of an authentication or authorization failure; anything else becomes a fixed text. */
function safeMessage(err: unknown): string {
  const s = toStatusError(err);
  if (s.code === Code.UNAUTHENTICATED || s.code === Code.PERMISSION_DENIED) return s.message;
  return 'Invalid credentials';
}

export function isRefusal(value: Access | Refusal): value is Refusal {
  return 'status' in value;
}

/** A local path to go back to after logging in: only `/…`, never `//host` or a scheme. */
export function safeNext(next: string | null | undefined): string {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.includes('\\') ? next : '/';
}

/** The login form, with an optional message above it. */
export function loginPage(next: string, message?: string): string {
  return page(
    'Log in',
    html`${message ? html`<p class="fail" id="login-error">${message}</p>` : ''}<p>This server needs a token (the same one Bazel and bzutil's <code>--token</code> use).</p>
<form method="post" action="/login"><input type="hidden" name="next" value="${safeNext(next)}"><input type="password" name="token" size="60" autocomplete="off" placeholder="token" autofocus> <button>Log in</button></form>`,
  );
}

/** `Set-Cookie` for a token accepted by POST /login (session cookie), and for logging out. */
export function tokenCookie(token: string | undefined): string {
  const attributes = 'HttpOnly; SameSite=Strict; Path=/';
  return token === undefined ? `${TOKEN_COOKIE}=; ${attributes}; Max-Age=0` : `${TOKEN_COOKIE}=${encodeURIComponent(token)}; ${attributes}`;
}

/** The body of a small form POST (`application/x-www-form-urlencoded`), at most `maxBytes`. */
export async function readForm(req: IncomingMessage, maxBytes = 4 * MAX_TOKEN_BYTES): Promise<URLSearchParams | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) return undefined;
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

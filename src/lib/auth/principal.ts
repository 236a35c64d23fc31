/**
 * Who is calling and what they may do: the permissions of bzutil's authorization model and the
 * instance-name globs a credential is limited to. Authenticators (token file, JWT) turn a bearer
 * token into a Principal; the servers' guards ask `authorize` before a call runs.
 */
import { StatusError } from '../errors/status-error.js';

/** Everything a credential can be allowed; `admin` implies every other one (within its instances). */
export const PERMISSIONS = ['cas.read', 'cas.write', 'ac.read', 'ac.write', 'execute', 'operations.read', 'admin'] as const;
export type Permission = (typeof PERMISSIONS)[number];

export function isPermission(value: unknown): value is Permission {
  return typeof value === 'string' && (PERMISSIONS as readonly string[]).includes(value);
}

export interface Principal {
  /** The credential's name (token file entry or JWT subject), for logs and messages; never the secret. */
  name: string;
  permissions: ReadonlySet<Permission>;
  /** Instance names this credential may use; `*` matches any run of characters (also `/`). */
  instances: readonly string[];
}

/** Whether `pattern` (with `*` wildcards) matches the whole of `instanceName`. */
export function instanceGlobMatches(pattern: string, instanceName: string): boolean {
  if (!pattern.includes('*')) return pattern === instanceName;
  const re = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`, 's');
  return re.test(instanceName);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function hasPermission(principal: Principal, permission: Permission): boolean {
  return principal.permissions.has('admin') || principal.permissions.has(permission);
}

/** Longest instance name quoted in a message (the rest is elided): error details must stay small. */
const MAX_QUOTED_INSTANCE = 80;

/**
 * PERMISSION_DENIED unless `principal` has one of `anyOf` and (when given) may use `instanceName`.
 * Messages name the credential and the missing permission, never a token.
 */
export function authorize(principal: Principal, anyOf: readonly Permission[], instanceName?: string): void {
  if (!anyOf.some((p) => hasPermission(principal, p))) {
    throw StatusError.permissionDenied(`Permission denied: credential ${JSON.stringify(principal.name)} lacks permission ${anyOf.join(' or ')}`);
  }
  if (instanceName !== undefined && !principal.instances.some((p) => instanceGlobMatches(p, instanceName))) {
    const quoted = instanceName.length > MAX_QUOTED_INSTANCE ? `${instanceName.slice(0, MAX_QUOTED_INSTANCE)}…` : instanceName;
    throw StatusError.permissionDenied(`Permission denied: credential ${JSON.stringify(principal.name)} may not use instance ${JSON.stringify(quoted)}`);
  }
}

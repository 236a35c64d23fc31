/**
 * The authenticator a configuration describes (`auth` section of the config tree, or the
 * `--auth_tokens` and `--jwt_jwks` flags): token file, JWT, both, or none (authentication off).
 */
import type { Logger } from '../util/logger.js';
import { type Authenticator, CombinedAuthenticator } from './authenticator.js';
import { TokenFileAuthenticator } from './token-file.js';

/** The `auth` section of the config tree (snake_case like the rest of it). */
export interface AuthSection {
  /** Token file: JSON or YAML `{tokens: [{name, sha256, instances, permissions}]}`, re-read on SIGHUP. */
  tokens_file?: string;
  jwt?: {
    /** JWKS file or http(s) URL. */
    jwks: string;
    issuer?: string;
    audience?: string;
    permissions_claim?: string;
    instances_claim?: string;
  };
}

/** Whether `section` turns authentication on. */
export function authEnabled(section: AuthSection | undefined): boolean {
  return section?.tokens_file !== undefined || section?.jwt !== undefined;
}

/** The authenticator of `section`, or undefined when it configures none. Throws when a file is unusable. */
export async function createAuthenticator(section: AuthSection | undefined, logger: Logger): Promise<Authenticator | undefined> {
  if (!section || !authEnabled(section)) return undefined;
  const opaque = section.tokens_file === undefined ? undefined : await TokenFileAuthenticator.open({ file: section.tokens_file, logger });
  // jose is loaded only when JWTs are configured.
  const jwt =
    section.jwt === undefined
      ? undefined
      : await (await import('./jwt.js')).JwtAuthenticator.open(
          {
            jwks: section.jwt.jwks,
            issuer: section.jwt.issuer,
            audience: section.jwt.audience,
            permissionsClaim: section.jwt.permissions_claim,
            instancesClaim: section.jwt.instances_claim,
          },
          logger,
        );
  if (opaque && !jwt) return opaque;
  if (jwt && !opaque) return jwt;
  return new CombinedAuthenticator({ opaque, jwt });
}

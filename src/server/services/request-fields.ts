/**
 * Parsing and checking of the request fields every service shares: digests (against the digest
 * functions Capabilities advertises) and operation names. One module that all services import, so
 * that no service imports another and what Capabilities advertises is exactly what is accepted.
 */
import { Digest } from '../../lib/digest/digest.js';
import type { DigestFunction } from '../../lib/digest/digest-function.js';
import { StatusError } from '../../lib/errors/status-error.js';
import type { reapi } from '../../lib/proto/index.js';
import { parseOperationName } from '../../lib/scheduler/operation-names.js';

/**
 * Converts a request digest into a `Digest`, and refuses digest functions this server does not serve
 * (INVALID_ARGUMENT with a BadRequest violation on `field`).
 */
export function digestFromRequest(
  served: readonly DigestFunction[],
  instanceName: string,
  digestFunctionValue: number | null | undefined,
  digest: reapi.IDigest | null | undefined,
  field: string,
): Digest {
  const d = Digest.fromProto(instanceName, digestFunctionValue, digest, field);
  assertDigestFunctionServed(served, d, field);
  return d;
}

/** INVALID_ARGUMENT unless `digest` uses one of the `served` functions. */
export function assertDigestFunctionServed(served: readonly DigestFunction[], digest: Digest, field: string): void {
  if (!served.includes(digest.digestFunction)) {
    const description = `Digest function ${digest.digestFunction} of ${digest.toString()} is not served here (served: ${served.join(', ')})`;
    throw StatusError.invalidArgument(description, [{ field, description }]);
  }
}

/**
 * The operation name to look up, canonical (lib/scheduler/operation-names.ts); INVALID_ARGUMENT when
 * empty or malformed. A bare UUID (the seed's `--name=b53b5e99-...`) names the default instance's
 * `operations/<uuid>`.
 */
export function requireName(name: string | null | undefined, field = 'name'): string {
  return parseOperationName(name, field).name;
}

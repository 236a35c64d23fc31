/**
 * What names an asset in the Remote Asset API: an instance name, one URI and a set of qualifiers
 * (name/value pairs such as `checksum.sri`). The order in which a client lists its qualifiers does
 * not matter, so a key is built from the qualifiers sorted by name; naming one qualifier twice is
 * refused, since the API gives no meaning to it. The key is hashed into a Digest so that the index
 * can live in any blob store (memory, disk), exactly as action results are filed under action digests.
 */
import { createHash } from 'node:crypto';
import { Digest } from '../digest/digest.js';
import { StatusError } from '../errors/status-error.js';

export interface Qualifier {
  name: string;
  value: string;
}

/** Longest URI accepted, so that a client cannot make the index key arbitrarily large. */
export const MAX_URI_LENGTH = 8192;
/** Most qualifiers on one request. */
export const MAX_QUALIFIERS = 64;

/**
 * Validates the request's URIs and qualifiers (INVALID_ARGUMENT with a field violation) and
 * returns the qualifiers sorted by name. An empty URI list is invalid: BuildStream probes with one
 * to learn whether the service exists.
 */
export function validateAssetRequest(uris: readonly string[], qualifiers: readonly { name?: string | null; value?: string | null }[]): Qualifier[] {
  if (uris.length === 0) throw StatusError.invalidArgument('At least one URI is required', [{ field: 'uris', description: 'No URI given' }]);
  for (const [i, uri] of uris.entries()) {
    if (uri.length === 0 || uri.length > MAX_URI_LENGTH) {
      throw StatusError.invalidArgument(`URI ${i} is empty or longer than ${MAX_URI_LENGTH} characters`, [
        { field: `uris[${i}]`, description: 'Empty or too long' },
      ]);
    }
  }
  if (qualifiers.length > MAX_QUALIFIERS) {
    throw StatusError.invalidArgument(`At most ${MAX_QUALIFIERS} qualifiers are accepted`, [{ field: 'qualifiers', description: 'Too many qualifiers' }]);
  }
  const sorted = qualifiers.map((q) => ({ name: q.name ?? '', value: q.value ?? '' })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const [i, q] of sorted.entries()) {
    if (q.name === '') throw StatusError.invalidArgument('A qualifier has no name', [{ field: 'qualifiers', description: 'Empty qualifier name' }]);
    if (i > 0 && sorted[i - 1]!.name === q.name) {
      throw StatusError.invalidArgument(`Qualifier ${JSON.stringify(q.name)} is given more than once`, [
        { field: 'qualifiers', description: `Duplicate qualifier ${JSON.stringify(q.name)}` },
      ]);
    }
  }
  return sorted;
}

/**
 * The index key of one URI with its (sorted) qualifiers: a SHA-256 digest of an unambiguous
 * encoding (every part length-prefixed), with the encoding's length as size. `kind` keeps blobs
 * and directories apart: the same URI may name both.
 */
export function assetKey(instanceName: string, kind: 'blob' | 'directory', uri: string, sortedQualifiers: readonly Qualifier[]): Digest {
  const parts = [kind, uri, ...sortedQualifiers.flatMap((q) => [q.name, q.value])];
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for (const part of parts) {
    const bytes = Buffer.from(part, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    hash.update(length).update(bytes);
    sizeBytes += 4 + bytes.length;
  }
  return Digest.create(instanceName, 'sha256', hash.digest('hex'), sizeBytes, 'uris');
}

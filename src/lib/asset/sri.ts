/**
 * Subresource Integrity (`checksum.sri` qualifier): `sha256-<base64>`, `sha384-…` or `sha512-…`,
 * the form Bazel sends for an http_archive's sha256 or integrity attribute.
 */
import { StatusError } from '../errors/status-error.js';

export interface Sri {
  algorithm: 'sha256' | 'sha384' | 'sha512';
  /** The expected digest, base64. */
  expected: string;
}

const LENGTHS = { sha256: 32, sha384: 48, sha512: 64 } as const;

/** Parses a `checksum.sri` value; INVALID_ARGUMENT when malformed or of another algorithm. */
export function parseSri(value: string): Sri {
  const m = /^(sha256|sha384|sha512)-([A-Za-z0-9+/]+={0,2})$/.exec(value.trim());
  const bytes = m ? Buffer.from(m[2]!, 'base64') : undefined;
  if (!m || bytes!.length !== LENGTHS[m[1] as Sri['algorithm']]) {
    throw StatusError.invalidArgument(`Qualifier checksum.sri ${JSON.stringify(value.slice(0, 200))} is not a sha256/sha384/sha512 SRI value`, [
      { field: 'qualifiers', description: 'Malformed checksum.sri' },
    ]);
  }
  return { algorithm: m[1] as Sri['algorithm'], expected: bytes!.toString('base64') };
}

import { describe, expect, it } from 'vitest';
import {
  digestFunctionFromHexLength,
  digestFunctionFromProto,
  digestFunctionToProto,
  hashBytes,
  hashStream,
} from '../../../src/lib/digest/digest-function.js';
import { reapi } from '../../../src/lib/proto/index.js';

describe('digest functions', () => {
  it('hash a stream to the same value as the whole bytes', async () => {
    const data = new TextEncoder().encode('hello, chunked world');
    const chunks = (async function* () {
      yield data.subarray(0, 5);
      yield data.subarray(5, 5);
      yield data.subarray(5);
    })();
    expect(await hashStream('sha256', chunks)).toEqual({ hash: hashBytes('sha256', data), sizeBytes: data.length });
  });

  it('have the golden empty-blob hashes', () => {
    expect(hashBytes('sha256', new Uint8Array())).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(hashBytes('sha1', new Uint8Array())).toBe('da39a3ee5e6b4b0d3255bfef95601890afd80709');
    expect(hashBytes('md5', new Uint8Array())).toBe('d41d8cd98f00b204e9800998ecf8427e');
  });

  it('map to and from the proto enum, leaving unimplemented values undefined', () => {
    for (const fn of ['sha256', 'sha1', 'md5', 'sha384', 'sha512', 'blake3'] as const) expect(digestFunctionFromProto(digestFunctionToProto(fn))).toBe(fn);
    expect(digestFunctionFromProto(reapi.DigestFunction.Value.UNKNOWN)).toBeUndefined();
    expect(digestFunctionFromProto(reapi.DigestFunction.Value.MURMUR3)).toBeUndefined();
  });

  it('are inferred from hex length (64 digits mean SHA-256: BLAKE3 must be named)', () => {
    expect([64, 40, 32, 96, 128, 63].map(digestFunctionFromHexLength)).toEqual(['sha256', 'sha1', 'md5', 'sha384', 'sha512', undefined]);
  });
});

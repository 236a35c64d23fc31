import { describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { reapi } from '../../../src/lib/proto/index.js';
import {
  decodeFindMissingBlobsRequest,
  encodeFindMissingBlobsRequest,
  encodeFindMissingBlobsResponse,
  WireDigest,
} from '../../../src/lib/proto/find-missing-codec.js';

const HASH = 'ab'.repeat(32);

/** Requests covering every field, defaults, unusual strings and the int64 range. */
const requests: reapi.IFindMissingBlobsRequest[] = [
  {},
  { instanceName: 'main' },
  { instanceName: 'ïnstance/ünïcode', digestFunction: reapi.DigestFunction.Value.SHA256 },
  { blobDigests: [{ hash: HASH, sizeBytes: 3 }, { hash: HASH }, { hash: '', sizeBytes: 7 }, {}] },
  { blobDigests: [{ hash: 'xyz', sizeBytes: -1 }, { hash: 'Ünïcode-hash', sizeBytes: Number.MAX_SAFE_INTEGER }] },
  { blobDigests: [{ hash: HASH, sizeBytes: 2 ** 31 }, { hash: HASH, sizeBytes: 2 ** 32 + 5 }, { hash: HASH, sizeBytes: -(2 ** 40) }] },
  { instanceName: 'x', blobDigests: [{ hash: HASH, sizeBytes: 127 }, { hash: HASH, sizeBytes: 128 }], digestFunction: 99 },
];

describe('find-missing codec', () => {
  it('encodes requests that protobufjs decodes to the same message', () => {
    for (const request of requests) {
      const decoded = reapi.FindMissingBlobsRequest.toObject(reapi.FindMissingBlobsRequest.decode(encodeFindMissingBlobsRequest(request)), { defaults: true });
      const expected = reapi.FindMissingBlobsRequest.toObject(reapi.FindMissingBlobsRequest.fromObject(request), { defaults: true });
      expect(decoded).toEqual(expected);
    }
  });

  it('decodes what protobufjs encodes to what protobufjs decodes', () => {
    for (const request of requests) {
      const bytes = reapi.FindMissingBlobsRequest.encode(request).finish();
      const expected = reapi.FindMissingBlobsRequest.toObject(reapi.FindMissingBlobsRequest.decode(bytes), { defaults: true });
      const decoded = decodeFindMissingBlobsRequest(bytes);
      expect({ ...decoded, blobDigests: decoded.blobDigests.map((d) => ({ hash: d.hash, sizeBytes: d.sizeBytes })) }).toEqual(expected);
    }
  });

  it('writes the bytes protobufjs writes when defaults are left unset', () => {
    const request = { instanceName: 'i', blobDigests: [{ hash: HASH, sizeBytes: 300 }, { hash: HASH }], digestFunction: reapi.DigestFunction.Value.SHA256 };
    expect(Buffer.from(encodeFindMissingBlobsRequest(request))).toEqual(Buffer.from(reapi.FindMissingBlobsRequest.encode(request).finish()));
    const response = { missingBlobDigests: [{ hash: HASH, sizeBytes: 1 }, { hash: 'f'.repeat(128), sizeBytes: 2 ** 40 }] };
    expect(Buffer.from(encodeFindMissingBlobsResponse(response))).toEqual(Buffer.from(reapi.FindMissingBlobsResponse.encode(response).finish()));
  });

  it('encodes Digest values directly, leaving out a zero size', () => {
    const digests = [Digest.ofBytes(Buffer.from('abc')), Digest.empty()];
    const decoded = reapi.FindMissingBlobsResponse.decode(encodeFindMissingBlobsResponse({ missingBlobDigests: digests }));
    expect(decoded.missingBlobDigests.map((d) => ({ hash: d.hash, sizeBytes: Number(d.sizeBytes) }))).toEqual(digests.map((d) => ({ hash: d.hash, sizeBytes: d.sizeBytes })));
    expect(encodeFindMissingBlobsResponse({ missingBlobDigests: [Digest.empty()] }).length).toBe(2 + 2 + 64);
  });

  it('skips unknown fields of every wire type in the request and in its digests', () => {
    const w = reapi.FindMissingBlobsRequest.encode({ instanceName: 'i', blobDigests: [{ hash: HASH, sizeBytes: 5 }] }).finish();
    const unknown = Buffer.from([
      (9 << 3) | 0, 0x96, 0x01, // varint
      (10 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8, // fixed64
      (11 << 3) | 2, 2, 0x61, 0x62, // bytes
      (12 << 3) | 5, 1, 2, 3, 4, // fixed32
    ]);
    // A digest with an unknown field after its size.
    const digest = Buffer.concat([Buffer.from(reapi.Digest.encode({ hash: HASH, sizeBytes: 9 }).finish()), Buffer.from([(7 << 3) | 0, 1])]);
    const bytes = Buffer.concat([unknown, Buffer.from(w), Buffer.from([(2 << 3) | 2, digest.length]), digest, unknown]);
    const decoded = decodeFindMissingBlobsRequest(bytes);
    expect(decoded.instanceName).toBe('i');
    expect(decoded.blobDigests.map((d) => ({ hash: d.hash, sizeBytes: d.sizeBytes }))).toEqual([
      { hash: HASH, sizeBytes: 5 },
      { hash: HASH, sizeBytes: 9 },
    ]);
  });

  it('tells whether each hash was lowercase hex on the wire', () => {
    const hashes = [HASH, 'AB'.repeat(32), 'ab'.repeat(31) + 'ag', '', 'ab/', 'é'];
    const decoded = decodeFindMissingBlobsRequest(encodeFindMissingBlobsRequest({ blobDigests: hashes.map((hash) => ({ hash, sizeBytes: 1 })) }));
    expect(decoded.blobDigests.every((d) => d instanceof WireDigest)).toBe(true);
    expect(decoded.blobDigests.map((d) => (d as WireDigest).hashIsLowercaseHex)).toEqual([true, false, false, false, false, false]);
    expect(decoded.blobDigests.map((d) => d.hash)).toEqual(hashes);
  });

  it('throws on truncated or malformed input, as protobufjs does', () => {
    const bytes = encodeFindMissingBlobsRequest({ blobDigests: [{ hash: HASH, sizeBytes: 5 }] });
    expect(() => decodeFindMissingBlobsRequest(bytes.subarray(0, bytes.length - 3))).toThrow(/out of range/);
    expect(() => decodeFindMissingBlobsRequest(Buffer.from([(1 << 3) | 2, 0x80]))).toThrow(/truncated varint/);
    expect(() => decodeFindMissingBlobsRequest(Buffer.from([(1 << 3) | 7]))).toThrow(/wire type 7/);
  });
});

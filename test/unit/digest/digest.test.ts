import { describe, expect, it } from 'vitest';
import { Digest, DigestSet, parseReadResourceName, parseWriteResourceName, requestDigestFunction } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { reapi } from '../../../src/lib/proto/index.js';

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const HASH = 'a'.repeat(64);
const SHA1_HASH = 'b'.repeat(40);

/** Runs `fn`, expecting INVALID_ARGUMENT; returns the error for further checks. */
function invalid(fn: () => unknown): StatusError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StatusError);
    expect((err as StatusError).code).toBe(Code.INVALID_ARGUMENT);
    return err as StatusError;
  }
  throw new Error('Expected INVALID_ARGUMENT, but nothing was thrown');
}

describe('Digest', () => {
  it('has the well-known SHA-256 of the empty blob', () => {
    const empty = Digest.empty();
    expect(empty.hash).toBe(EMPTY_SHA256);
    expect(empty.sizeBytes).toBe(0);
    expect(empty.toString()).toBe(`${EMPTY_SHA256}/0`);
    expect(empty.isEmpty).toBe(true);
    // proto3: a zero size is left out, as other encoders do.
    expect(empty.toProto()).toEqual({ hash: EMPTY_SHA256 });
  });

  it('calls empty only the blob of no bytes under its own function, not any size-0 digest', () => {
    expect(Digest.empty({ digestFunction: 'sha1' }).isEmpty).toBe(true);
    expect(Digest.parse(`${HASH}/0`).isEmpty).toBe(false);
    expect(Digest.create('', 'sha256', EMPTY_SHA256, 0, 'd').isEmpty).toBe(true);
    expect(Digest.ofBytes(new Uint8Array(1)).isEmpty).toBe(false);
  });

  it('parses <hash>/<size> and the - and : separators', () => {
    for (const text of [`${HASH}/12`, `${HASH}-12`, `${HASH}:12`, `  ${HASH}/12\n`]) {
      const d = Digest.parse(text);
      expect([d.hash, d.sizeBytes, d.digestFunction, d.instanceName]).toEqual([HASH, 12, 'sha256', '']);
    }
  });

  it('infers the digest function from the hash length', () => {
    expect(Digest.parse(`${SHA1_HASH}/3`).digestFunction).toBe('sha1');
    expect(Digest.parse(`${'c'.repeat(128)}/3`).digestFunction).toBe('sha512');
  });

  it('accepts an uppercase hash in CLI input by lowercasing it, but not in a digest', () => {
    expect(Digest.parse(`${'A'.repeat(64)}/1`).hash).toBe(HASH);
    const err = invalid(() => Digest.create('', 'sha256', 'A'.repeat(64), 1));
    expect(err.message).toContain('not lowercase hexadecimal');
    expect(err.fieldViolations()).toEqual([expect.objectContaining({ field: 'digest.hash' })]);
  });

  it('rejects a hash of the wrong length for its function, naming the field', () => {
    const err = invalid(() => Digest.create('', 'sha256', SHA1_HASH, 1, 'action_digest'));
    expect(err.message).toBe(`Hash ${JSON.stringify(SHA1_HASH)} has 40 characters, but sha256 hashes have 64`);
    expect(err.fieldViolations()).toEqual([{ field: 'action_digest.hash', description: err.message }]);
    expect(invalid(() => Digest.parse(`${'a'.repeat(63)}/1`)).message).toContain('matches no supported digest function');
  });

  it('rejects non-hex characters', () => {
    expect(invalid(() => Digest.create('', 'sha256', 'g'.repeat(64), 1)).fieldViolations()[0]?.field).toBe('digest.hash');
  });

  it('accepts every lowercase hex digit and rejects the characters next to them', () => {
    const all = '0123456789abcdef'.repeat(4);
    expect(Digest.create('', 'sha256', all, 1).hash).toBe(all);
    // The neighbours of the accepted ranges in ASCII: '/', ':', '`', 'g', and uppercase.
    for (const c of ['/', ':', '`', 'g', 'A', 'F', ' ', '\u0000', 'é']) {
      expect(invalid(() => Digest.create('', 'sha256', c + HASH.slice(1), 1)).fieldViolations()[0]?.field).toBe('digest.hash');
      expect(invalid(() => Digest.create('', 'sha256', HASH.slice(1) + c, 1)).fieldViolations()[0]?.field).toBe('digest.hash');
    }
  });

  it('rejects negative, fractional and unsafe sizes with a size_bytes violation', () => {
    for (const sizeBytes of [-1, 1.5, 2 ** 53, Number.NaN]) {
      const err = invalid(() => Digest.create('', 'sha256', HASH, sizeBytes));
      expect(err.fieldViolations()).toEqual([expect.objectContaining({ field: 'digest.size_bytes' })]);
    }
    expect(Digest.create('', 'sha256', HASH, 2 ** 53 - 1).sizeBytes).toBe(2 ** 53 - 1);
    invalid(() => Digest.parse(`${HASH}/-1`));
    invalid(() => Digest.parse(`${HASH}`));
  });

  it('builds from a wire digest, requiring one to be present', () => {
    const d = Digest.fromProto('main', reapi.DigestFunction.Value.SHA256, { hash: HASH, sizeBytes: 5 }, 'input_root_digest');
    expect([d.instanceName, d.digestFunction, d.hash, d.sizeBytes]).toEqual(['main', 'sha256', HASH, 5]);
    expect(Digest.fromProto('', 0, { hash: EMPTY_SHA256 }).sizeBytes).toBe(0);
    expect(invalid(() => Digest.fromProto('', 0, null, 'input_root_digest')).fieldViolations()[0]?.field).toBe('input_root_digest');
  });

  it('rejects a request digest function that is not implemented', () => {
    const err = invalid(() => requestDigestFunction(reapi.DigestFunction.Value.MURMUR3));
    expect(err.message).toBe(`Digest function ${reapi.DigestFunction.Value.MURMUR3} (MURMUR3) is not supported by this server`);
    expect(requestDigestFunction(reapi.DigestFunction.Value.BLAKE3)).toBe('blake3');
    expect(requestDigestFunction(0)).toBeUndefined();
    expect(requestDigestFunction(reapi.DigestFunction.Value.SHA1)).toBe('sha1');
  });

  it('rejects instance names with empty, dot or reserved segments', () => {
    for (const name of ['a//b', './a', 'a/..', 'x/blobs/y', 'uploads', 'a/compressed-blobs']) invalid(() => Digest.create(name, 'sha256', HASH, 1));
    expect(Digest.create('a/b/c', 'sha256', HASH, 1).instanceName).toBe('a/b/c');
  });

  it('validates every instance name, also right after a valid one was accepted', () => {
    // Validation results are remembered for the last valid name: a different name is checked again.
    expect(Digest.create('main', 'sha256', HASH, 1).instanceName).toBe('main');
    expect(Digest.create('main', 'sha256', HASH, 2).instanceName).toBe('main');
    expect(invalid(() => Digest.create('main/blobs', 'sha256', HASH, 1)).fieldViolations()[0]?.field).toBe('instance_name');
    expect(invalid(() => Digest.fromProto('main//x', 0, { hash: HASH, sizeBytes: 1 })).fieldViolations()[0]?.field).toBe('instance_name');
    expect(Digest.create('main', 'sha256', HASH, 3).instanceName).toBe('main');
  });

  it('keys digests by instance name, function, hash and size', () => {
    const a = Digest.create('x', 'sha256', HASH, 1);
    expect(a.equals(Digest.create('x', 'sha256', HASH, 1))).toBe(true);
    expect(a.key).not.toBe(Digest.create('y', 'sha256', HASH, 1).key);
    expect(a.key).not.toBe(Digest.create('x', 'sha256', HASH, 2).key);
    expect(a.withInstanceName('y').instanceName).toBe('y');
    expect(a.toMissingSubject()).toBe(`blobs/${HASH}/1`);
  });
});

describe('ByteStream resource names', () => {
  it('parses read names with and without an instance name', () => {
    expect(parseReadResourceName(`blobs/${HASH}/42`).digest.key).toBe(Digest.create('', 'sha256', HASH, 42).key);
    const parsed = parseReadResourceName(`my/multi/segment/blobs/${HASH}/42`);
    expect(parsed.digest.instanceName).toBe('my/multi/segment');
    expect(parsed.compressor).toBe('identity');
  });

  it('parses compressed-blobs names with their compressor', () => {
    const parsed = parseReadResourceName(`inst/compressed-blobs/zstd/${HASH}/42`);
    expect(parsed.compressor).toBe('zstd');
    expect(parsed.digest.sizeBytes).toBe(42);
    expect(invalid(() => parseReadResourceName(`compressed-blobs/lz4/${HASH}/42`)).message).toContain('unknown compressor "lz4"');
  });

  it('parses an explicit digest function segment', () => {
    expect(parseReadResourceName(`blobs/sha1/${SHA1_HASH}/3`).digest.digestFunction).toBe('sha1');
    expect(parseReadResourceName(`blobs/sha256/${HASH}/3`).digest.digestFunction).toBe('sha256');
    expect(parseWriteResourceName(`i/uploads/u/compressed-blobs/zstd/sha1/${SHA1_HASH}/3`).digest.digestFunction).toBe('sha1');
    // The segment and the hash must agree.
    invalid(() => parseReadResourceName(`blobs/sha1/${HASH}/3`));
  });

  it('names an unsupported digest function precisely', () => {
    const err = invalid(() => parseReadResourceName(`inst/blobs/murmur3/${HASH}/3`));
    expect(err.message).toBe(`Digest function "murmur3" in ${JSON.stringify(`inst/blobs/murmur3/${HASH}/3`)} is not supported by this server`);
    expect(parseReadResourceName(`inst/blobs/blake3/${HASH}/3`).digest.digestFunction).toBe('blake3');
    expect(err.fieldViolations()).toEqual([expect.objectContaining({ field: 'resource_name' })]);
  });

  it('parses write names with upload id and trailing metadata', () => {
    const parsed = parseWriteResourceName(`a/b/uploads/0f3c-uuid/blobs/${HASH}/42/some/metadata`);
    expect(parsed.digest.instanceName).toBe('a/b');
    expect(parsed.uploadId).toBe('0f3c-uuid');
    expect(parsed.metadata).toBe('some/metadata');
    expect(parseWriteResourceName(`uploads/u/blobs/${HASH}/42`).metadata).toBe('');
  });

  it('rejects malformed names, saying what is wrong', () => {
    expect(invalid(() => parseReadResourceName(`inst/${HASH}/42`)).message).toContain('no "blobs" or "compressed-blobs" segment');
    expect(invalid(() => parseReadResourceName(`blobs/${HASH}/42/extra`)).message).toContain('unexpected segments after the size');
    expect(invalid(() => parseReadResourceName(`blobs/${HASH}/forty`)).message).toContain('no valid size');
    expect(invalid(() => parseWriteResourceName(`blobs/${HASH}/42`)).message).toContain('{instance}/uploads/{uuid}/blobs/{hash}/{size}');
    expect(invalid(() => parseWriteResourceName(`uploads//blobs/${HASH}/42`)).message).toContain('empty upload id');
    expect(invalid(() => parseWriteResourceName(`uploads/u/${HASH}/42`)).message).toContain('lacks a "blobs" segment');
  });

  it('round-trips read and write paths for every form', () => {
    const digests = [
      Digest.create('', 'sha256', HASH, 42),
      Digest.create('a/b', 'sha256', HASH, 0),
      Digest.create('inst', 'sha1', SHA1_HASH, 7),
    ];
    for (const d of digests) {
      for (const compressor of ['identity', 'zstd'] as const) {
        const read = parseReadResourceName(d.toByteStreamReadPath(compressor));
        expect(read.digest.key).toBe(d.key);
        expect(read.compressor).toBe(compressor);
        const write = parseWriteResourceName(d.toByteStreamWritePath('some-uuid', compressor));
        expect([write.digest.key, write.uploadId, write.compressor, write.metadata]).toEqual([d.key, 'some-uuid', compressor, '']);
      }
    }
    expect(Digest.create('a/b', 'sha256', HASH, 42).toByteStreamReadPath()).toBe(`a/b/blobs/${HASH}/42`);
    expect(Digest.create('', 'sha1', SHA1_HASH, 7).toByteStreamWritePath('u', 'zstd')).toBe(`uploads/u/compressed-blobs/zstd/sha1/${SHA1_HASH}/7`);
  });
});

/** Digests whose hashes share their first 57 hex digits. */
const colliding = (tail: string, sizeBytes = 1) => Digest.create('', 'sha256', 'abcdef0' + tail.padStart(57, '0'), sizeBytes);

describe('DigestSet', () => {
  it('adds each digest once, comparing by value', () => {
    const set = new DigestSet();
    expect(set.add(colliding('1'))).toBe(true);
    expect(set.add(colliding('1'))).toBe(false);
    expect(set.add(colliding('2'))).toBe(true);
    expect(set.add(colliding('2', 5))).toBe(true);
    expect(set.add(colliding('2', 5))).toBe(false);
    expect(set.add(colliding('2'))).toBe(false);
    expect(set.add(Digest.ofBytes(Buffer.from('x')))).toBe(true);
  });

  it('stays correct when many digests share most of their hash', () => {
    const set = new DigestSet();
    const many = Array.from({ length: 200 }, (_, i) => colliding(i.toString(16)));
    for (const d of many) expect(set.add(d)).toBe(true);
    for (const d of many) expect(set.add(colliding(d.hash.slice(7)))).toBe(false);
    expect(set.add(colliding('fff'))).toBe(true);
  });

  it('grows past its initial table, keeping every digest', () => {
    const set = new DigestSet();
    const digests = Array.from({ length: 5000 }, (_, i) => Digest.ofBytes(Buffer.from(`blob ${i}`)));
    expect(digests.map((d) => set.add(d)).every(Boolean)).toBe(true);
    expect(digests.map((d) => set.add(Digest.create('', 'sha256', d.hash, d.sizeBytes))).some(Boolean)).toBe(false);
  });
});

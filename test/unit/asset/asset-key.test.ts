import { describe, expect, it } from 'vitest';
import { assetKey, validateAssetRequest } from '../../../src/lib/asset/asset-key.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';

describe('assetKey', () => {
  it('does not depend on the order the client listed its qualifiers in', () => {
    const a = validateAssetRequest(['urn:x'], [{ name: 'b', value: '2' }, { name: 'a', value: '1' }]);
    const b = validateAssetRequest(['urn:x'], [{ name: 'a', value: '1' }, { name: 'b', value: '2' }]);
    expect(assetKey('', 'blob', 'urn:x', a).key).toBe(assetKey('', 'blob', 'urn:x', b).key);
  });

  it('keeps apart parts that concatenate to the same text, kinds and instance names', () => {
    const q1 = [{ name: 'ab', value: 'c' }];
    const q2 = [{ name: 'a', value: 'bc' }];
    expect(assetKey('', 'blob', 'urn:x', q1).hash).not.toBe(assetKey('', 'blob', 'urn:x', q2).hash);
    expect(assetKey('', 'blob', 'urn:xa', []).hash).not.toBe(assetKey('', 'blob', 'urn:x', [{ name: 'a', value: '' }]).hash);
    expect(assetKey('', 'blob', 'urn:x', []).hash).not.toBe(assetKey('', 'directory', 'urn:x', []).hash);
    expect(assetKey('', 'blob', 'urn:x', []).key).not.toBe(assetKey('other', 'blob', 'urn:x', []).key);
  });
});

describe('validateAssetRequest', () => {
  const codeOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      return err instanceof StatusError ? err.code : undefined;
    }
    return Code.OK;
  };
  it('refuses no URIs, an empty URI, an unnamed qualifier and a qualifier named twice', () => {
    expect(codeOf(() => validateAssetRequest([], []))).toBe(Code.INVALID_ARGUMENT);
    expect(codeOf(() => validateAssetRequest([''], []))).toBe(Code.INVALID_ARGUMENT);
    expect(codeOf(() => validateAssetRequest(['u'], [{ name: '', value: 'v' }]))).toBe(Code.INVALID_ARGUMENT);
    expect(codeOf(() => validateAssetRequest(['u'], [{ name: 'n', value: '1' }, { name: 'n', value: '1' }]))).toBe(Code.INVALID_ARGUMENT);
    expect(codeOf(() => validateAssetRequest(['u'], [{ name: 'n', value: '1' }]))).toBe(Code.OK);
  });
});

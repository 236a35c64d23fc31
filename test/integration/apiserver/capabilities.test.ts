import { afterEach, describe, expect, it } from 'vitest';
import { Code } from '../../../src/lib/errors/status-error.js';
import { MAX_SEND_MESSAGE_BYTES } from '../../../src/server/grpc/server.js';
import { type Harness, expectStatus, reapi, startHarness, unary } from './harness.js';

describe('apiserver Capabilities', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('advertises every digest function (SHA-256 first), compressors, AC updates, a batch limit under 4 MiB and API versions 2.0 to 2.4, split/splice with FastCDC parameters, without execution', async () => {
    h = await startHarness();
    const caps = await unary<reapi.ServerCapabilities>(h.capabilities, 'getCapabilities', { instanceName: '' });
    const cache = caps.cacheCapabilities!;
    expect(cache.digestFunctions).toEqual([reapi.DigestFunction.Value.SHA256, reapi.DigestFunction.Value.SHA1, reapi.DigestFunction.Value.MD5, reapi.DigestFunction.Value.SHA384, reapi.DigestFunction.Value.SHA512, reapi.DigestFunction.Value.BLAKE3]);
    // Clients may not write the action cache unless --allow_ac_updates says so.
    expect(cache.actionCacheUpdateCapabilities?.updateEnabled).toBe(false);
    expect(cache.maxBatchTotalSizeBytes).toBeGreaterThan(0);
    expect(cache.maxBatchTotalSizeBytes).toBeLessThan(MAX_SEND_MESSAGE_BYTES);
    expect(cache.symlinkAbsolutePathStrategy).toBe(reapi.SymlinkAbsolutePathStrategy.Value.ALLOWED);
    const compressors = [reapi.Compressor.Value.ZSTD, reapi.Compressor.Value.DEFLATE];
    expect(cache.supportedCompressors).toEqual(compressors);
    expect(cache.supportedBatchUpdateCompressors).toEqual(compressors);
    expect(caps.lowApiVersion).toMatchObject({ major: 2, minor: 0, patch: 0 });
    expect(caps.highApiVersion).toMatchObject({ major: 2, minor: 4, patch: 0 });
    expect(cache.splitBlobSupport).toBe(true);
    expect(cache.spliceBlobSupport).toBe(true);
    expect(cache.fastCdc_2020Params).toMatchObject({ avgChunkSizeBytes: 512 * 1024, seed: 0 });
    expect(caps.deprecatedApiVersion).toMatchObject({ major: 2, minor: 0 });
    expect(caps.executionCapabilities ?? undefined).toBeUndefined();
  });

  it('reflects configuration: allowed AC updates, disallowed absolute symlinks, a smaller batch limit', async () => {
    h = await startHarness({
      capabilities: { actionCacheUpdateEnabled: true, symlinkAbsolutePathStrategy: 'DISALLOWED', maxBatchTotalSizeBytes: 1000 },
    });
    const caps = await unary<reapi.ServerCapabilities>(h.capabilities, 'getCapabilities', { instanceName: 'main' });
    expect(caps.cacheCapabilities?.actionCacheUpdateCapabilities?.updateEnabled).toBe(true);
    expect(caps.cacheCapabilities?.symlinkAbsolutePathStrategy).toBe(reapi.SymlinkAbsolutePathStrategy.Value.DISALLOWED);
    expect(caps.cacheCapabilities?.maxBatchTotalSizeBytes).toBe(1000);
  });

  it('advertises no split/splice when chunking is off, and refuses an average chunk size that is not a power of two', async () => {
    h = await startHarness({ capabilities: { chunking: false } });
    const caps = await unary<reapi.ServerCapabilities>(h.capabilities, 'getCapabilities', { instanceName: '' });
    expect(caps.cacheCapabilities?.splitBlobSupport).toBe(false);
    expect(caps.cacheCapabilities?.spliceBlobSupport).toBe(false);
    expect(caps.cacheCapabilities?.fastCdc_2020Params ?? undefined).toBeUndefined();
    await expect(startHarness({ capabilities: { chunking: { avgChunkSizeBytes: 3000 } } })).rejects.toThrow(/power of two/);
  });

  it('advertises no compressors when configured with none', async () => {
    h = await startHarness({ capabilities: { compressors: [] } });
    const caps = await unary<reapi.ServerCapabilities>(h.capabilities, 'getCapabilities', { instanceName: '' });
    expect(caps.cacheCapabilities?.supportedCompressors).toEqual([]);
    expect(caps.cacheCapabilities?.supportedBatchUpdateCompressors).toEqual([]);
  });

  it('rejects a malformed instance name with a BadRequest violation', async () => {
    h = await startHarness();
    const err = await expectStatus(unary(h.capabilities, 'getCapabilities', { instanceName: 'a//b' }), Code.INVALID_ARGUMENT);
    expect(err.fieldViolations().map((v) => v.field)).toEqual(['instance_name']);
  });
});

/**
 * A client port's limits from the config tree (apiserver/scheduler.max_concurrent_streams and
 * max_receive_message_size): the server advertises the stream limit in its HTTP/2 SETTINGS and
 * refuses a message over the size limit with RESOURCE_EXHAUSTED.
 */
import * as http2 from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { expectStatus, type Harness, startHarness, unary } from './harness.js';

describe('apiserver port limits', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('advertises max_concurrent_streams in its HTTP/2 SETTINGS', async () => {
    h = await startHarness({ limits: { maxConcurrentStreams: 7 } });
    const session = http2.connect(`http://127.0.0.1:${h.server.port}`);
    try {
      const settings = await new Promise<http2.Settings>((resolve, reject) => {
        session.once('remoteSettings', resolve);
        session.once('error', reject);
      });
      expect(settings.maxConcurrentStreams).toBe(7);
    } finally {
      session.destroy();
    }
  });

  it('refuses a message larger than max_receive_message_size with RESOURCE_EXHAUSTED', async () => {
    h = await startHarness({ limits: { maxReceiveMessageBytes: 1024 * 1024 } });
    const data = new Uint8Array(1536 * 1024);
    const digest = Digest.ofBytes(data);
    const err = await expectStatus(unary(h.cas, 'batchUpdateBlobs', { requests: [{ digest: digest.toProto(), data }] }), Code.RESOURCE_EXHAUSTED);
    expect(err.message).toMatch(/message|larger|exceed/i);
    // A message within the limit is served.
    const small = new Uint8Array(1000);
    await unary(h.cas, 'batchUpdateBlobs', { requests: [{ digest: Digest.ofBytes(small).toProto(), data: small }] });
  });
});

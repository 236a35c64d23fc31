/**
 * Checks on upload that a blob's bytes match the digest the client declared, so that the store below
 * (which trusts its keys) never commits content under the wrong name. A CAS that served a wrong blob
 * would poison every build that references it; this is the one place that prevents it.
 *
 * Hashing happens in a single pass while the bytes stream through to the base store; the check
 * throws from inside the stream, before the base sees its end, so the base abandons the write. Too
 * many bytes are rejected as soon as they arrive. Not for the action cache, whose keys (action
 * digests) do not describe the stored ActionResult.
 */
import type { Digest } from '../digest/digest.js';
import { newHasher } from '../digest/digest-function.js';
import { StatusError } from '../errors/status-error.js';
import { type CallOptions, ForwardingBlobStore } from './blob-store.js';

export class VerifyingBlobStore extends ForwardingBlobStore {
  override async put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<void> {
    if (data instanceof Uint8Array) {
      const hasher = newHasher(digest.digestFunction);
      hasher.update(data);
      const failure = mismatch(digest, hasher.digest('hex'), data.length);
      if (failure) throw failure;
      return this.base.put(digest, data, opts);
    }
    let failure: StatusError | undefined;
    const verified = async function* (): AsyncGenerator<Uint8Array, void, undefined> {
      const hasher = newHasher(digest.digestFunction);
      let receivedBytes = 0;
      for await (const chunk of data) {
        receivedBytes += chunk.length;
        if (receivedBytes > digest.sizeBytes) {
          failure = StatusError.invalidArgument(
            `Failed to store blob: client declared ${digest.toString()}, server received at least ${receivedBytes} bytes`,
            [{ field: 'digest.size_bytes', description: `Blob has more than the declared ${digest.sizeBytes} bytes` }],
          );
          throw failure;
        }
        hasher.update(chunk);
        yield chunk;
      }
      failure = mismatch(digest, hasher.digest('hex'), receivedBytes);
      if (failure) throw failure;
    };
    try {
      await this.base.put(digest, verified(), opts);
    } catch (err) {
      // The base may wrap what the stream threw; the verification error is the one that explains it.
      throw failure ?? err;
    }
  }
}

function mismatch(digest: Digest, computedHash: string, computedSizeBytes: number): StatusError | undefined {
  if (computedHash === digest.hash && computedSizeBytes === digest.sizeBytes) return undefined;
  const field = computedSizeBytes !== digest.sizeBytes ? 'digest.size_bytes' : 'digest.hash';
  return StatusError.invalidArgument(
    `Failed to store blob: client declared ${digest.toString()}, server computed ${computedHash}/${computedSizeBytes}`,
    [{ field, description: `Content does not match the declared digest ${digest.toString()}` }],
  );
}

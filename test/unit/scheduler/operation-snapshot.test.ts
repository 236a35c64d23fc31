import { describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { unpackAny } from '../../../src/lib/proto/services.js';
import {
  EXECUTE_OPERATION_METADATA_TYPE,
  EXECUTE_RESPONSE_TYPE,
  toLongrunningOperation,
} from '../../../src/lib/scheduler/operation-snapshot.js';
import { PlatformProperties } from '../../../src/lib/scheduler/platform-properties.js';

const actionDigest = Digest.ofBytes(new TextEncoder().encode('action'), { instanceName: 'ci' });

describe('toLongrunningOperation', () => {
  it('carries stage, action digest and digest function in ExecuteOperationMetadata and no response while running', () => {
    const op = toLongrunningOperation({ name: 'ci/operations/1', actionDigest, stage: 'EXECUTING' });
    expect(op.name).toBe('ci/operations/1');
    expect(op.done).toBe(false);
    expect(op.response).toBeUndefined();
    expect(op.metadata?.type_url).toBe(`type.googleapis.com/${EXECUTE_OPERATION_METADATA_TYPE}`);
    const md = unpackAny(EXECUTE_OPERATION_METADATA_TYPE, reapi.ExecuteOperationMetadata, op.metadata)!;
    expect(md.stage).toBe(reapi.ExecutionStage.Value.EXECUTING);
    expect(md.actionDigest).toMatchObject({ hash: actionDigest.hash, sizeBytes: actionDigest.sizeBytes });
    expect(md.digestFunction).toBe(reapi.DigestFunction.Value.SHA256);
  });

  it('puts an execution failure in the ExecuteResponse of a done operation, never in Operation.error', () => {
    const op = toLongrunningOperation({
      name: 'ci/operations/2',
      actionDigest,
      stage: 'COMPLETED',
      response: { status: { code: Code.CANCELLED, message: 'Operation was cancelled' } },
    });
    expect(op.done).toBe(true);
    expect(op.error).toBeUndefined();
    const response = unpackAny(EXECUTE_RESPONSE_TYPE, reapi.ExecuteResponse, op.response)!;
    expect(response.status?.code).toBe(Code.CANCELLED);
  });
});

describe('PlatformProperties', () => {
  const of = (...pairs: [string, string][]) => PlatformProperties.fromProto({ properties: pairs.map(([name, value]) => ({ name, value })) });

  it('is satisfied by a worker offering every property, extra ones and several values per name included', () => {
    const worker = of(['OSFamily', 'linux'], ['ISA', 'x86-64'], ['ISA', 'x86-64-v3'], ['pool', 'big']);
    expect(worker.satisfies(of(['OSFamily', 'linux'], ['ISA', 'x86-64-v3']))).toBe(true);
    expect(worker.satisfies(of())).toBe(true);
  });

  it('is not satisfied when a name is absent or a value differs', () => {
    const worker = of(['OSFamily', 'linux']);
    expect(worker.satisfies(of(['OSFamily', 'windows']))).toBe(false);
    expect(worker.satisfies(of(['OSFamily', 'linux'], ['gpu', 'a100']))).toBe(false);
  });

  it('gives equal platforms the same key regardless of property order', () => {
    expect(of(['b', '2'], ['a', '1']).key).toBe(of(['a', '1'], ['b', '2']).key);
    expect(of(['a', '1']).key).not.toBe(of(['a', '2']).key);
  });
});

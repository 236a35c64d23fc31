import { describe, expect, it } from 'vitest';
import { decodeOperation } from '../../../src/lib/client/execution-client.js';
import { StatusError } from '../../../src/lib/errors/status-error.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { packAny } from '../../../src/lib/proto/services.js';

describe('decodeOperation', () => {
  it('decodes the stage from the metadata and the ExecuteResponse from the response', () => {
    const op = {
      name: 'operations/abc',
      done: true,
      metadata: packAny('build.bazel.remote.execution.v2.ExecuteOperationMetadata', reapi.ExecuteOperationMetadata, {
        stage: reapi.ExecutionStage.Value.COMPLETED,
      }),
      response: packAny('build.bazel.remote.execution.v2.ExecuteResponse', reapi.ExecuteResponse, {
        result: { exitCode: 7 },
        cachedResult: true,
      }),
    };
    const decoded = decodeOperation(op);
    expect(decoded).toMatchObject({ name: 'operations/abc', done: true, stage: 'COMPLETED' });
    expect(decoded.response?.result?.exitCode).toBe(7);
    expect(decoded.response?.cachedResult).toBe(true);
    expect(decoded.error).toBeUndefined();
  });

  it('reports Operation.error as a StatusError and an absent metadata as UNKNOWN', () => {
    const decoded = decodeOperation({ name: 'operations/x', done: true, error: StatusError.internal('worker vanished').toProto() });
    expect(decoded.stage).toBe('UNKNOWN');
    expect(decoded.error).toBeInstanceOf(StatusError);
    expect(decoded.error?.message).toBe('worker vanished');
  });
});

import { describe, expect, it } from 'vitest';
import { decodeOperation } from '../../../src/lib/client/execution-client.js';
import {
  formatMs,
  formatOperation,
  formatOperationTable,
  isMissingInputs,
  timestampToMs,
  toFullOperationJson,
  toOperationView,
  toStatusView,
} from '../../../src/lib/cli/operation-format.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { type longrunning, reapi } from '../../../src/lib/proto/index.js';
import { packAny } from '../../../src/lib/proto/services.js';

const H = (c: string) => c.repeat(64);
const METADATA = 'build.bazel.remote.execution.v2.ExecuteOperationMetadata';
const RESPONSE = 'build.bazel.remote.execution.v2.ExecuteResponse';

/** A Timestamp `ms` milliseconds after 2024-01-01T00:00:00Z. */
const at = (ms: number) => {
  const total = Date.UTC(2024, 0, 1) + ms;
  return { seconds: Math.floor(total / 1000), nanos: (total % 1000) * 1e6 };
};

function operation(opts: { stage: keyof typeof reapi.ExecutionStage.Value; response?: reapi.IExecuteResponse; error?: StatusError }): longrunning.IOperation {
  const op: longrunning.IOperation = {
    name: 'operations/7b1c',
    done: opts.stage === 'COMPLETED',
    metadata: packAny(METADATA, reapi.ExecuteOperationMetadata, { stage: reapi.ExecutionStage.Value[opts.stage], actionDigest: { hash: H('a'), sizeBytes: 140 } }),
  };
  if (opts.response) op.response = packAny(RESPONSE, reapi.ExecuteResponse, opts.response);
  if (opts.error) op.error = opts.error.toProto();
  return op;
}

const completed: reapi.IExecuteResponse = {
  status: { code: 0 },
  cachedResult: false,
  result: {
    exitCode: 0,
    outputFiles: [
      { path: 'out/z.txt', digest: { hash: H('1'), sizeBytes: 6 } },
      { path: 'out/tool', digest: { hash: H('2'), sizeBytes: 100 }, isExecutable: true },
    ],
    outputDirectories: [{ path: 'gen', treeDigest: { hash: H('3'), sizeBytes: 85 } }],
    outputSymlinks: [{ path: 'latest', target: 'out/z.txt' }],
    // The pre-v2.1 field repeats the same link: it must be shown once.
    outputFileSymlinks: [{ path: 'latest', target: 'out/z.txt' }],
    stdoutDigest: { hash: H('4'), sizeBytes: 3 },
    executionMetadata: {
      worker: 'host:1',
      queuedTimestamp: at(0),
      workerStartTimestamp: at(250),
      inputFetchStartTimestamp: at(260),
      inputFetchCompletedTimestamp: at(300),
      executionStartTimestamp: at(300),
      executionCompletedTimestamp: at(1300),
      outputUploadStartTimestamp: at(1300),
      outputUploadCompletedTimestamp: at(1304.5),
      workerCompletedTimestamp: at(1310),
    },
  },
};

describe('toOperationView', () => {
  it('computes queue latency, phase durations and ISO timestamps from ExecutedActionMetadata', () => {
    const view = toOperationView(decodeOperation(operation({ stage: 'COMPLETED', response: completed })));
    expect(view).toMatchObject({ name: 'operations/7b1c', done: true, stage: 'COMPLETED', actionDigest: `${H('a')}/140` });
    expect(view.response?.result?.executionMetadata).toEqual({
      worker: 'host:1',
      queueLatencyMs: 250,
      workerTotalMs: 1060,
      inputFetchMs: 40,
      executionMs: 1000,
      outputUploadMs: 4.5,
      queuedTimestamp: '2024-01-01T00:00:00.000Z',
      workerStartTimestamp: '2024-01-01T00:00:00.250Z',
      workerCompletedTimestamp: '2024-01-01T00:00:01.310Z',
      inputFetchStartTimestamp: '2024-01-01T00:00:00.260Z',
      inputFetchCompletedTimestamp: '2024-01-01T00:00:00.300Z',
      executionStartTimestamp: '2024-01-01T00:00:00.300Z',
      executionCompletedTimestamp: '2024-01-01T00:00:01.300Z',
      outputUploadStartTimestamp: '2024-01-01T00:00:01.300Z',
      outputUploadCompletedTimestamp: '2024-01-01T00:00:01.304Z',
    });
  });

  it('sorts outputs by path, merges duplicate symlinks and omits absent stream digests', () => {
    const result = toOperationView(decodeOperation(operation({ stage: 'COMPLETED', response: completed }))).response!.result!;
    expect(result.outputFiles.map((f) => f.path)).toEqual(['out/tool', 'out/z.txt']);
    expect(result.outputFiles[0]).toEqual({ path: 'out/tool', digest: `${H('2')}/100`, isExecutable: true });
    expect(result.outputSymlinks).toEqual([{ path: 'latest', target: 'out/z.txt' }]);
    expect(result.stdoutDigest).toBe(`${H('4')}/3`);
    expect(result).not.toHaveProperty('stderrDigest');
  });

  it('leaves durations out when a timestamp is unset instead of inventing them', () => {
    const view = toOperationView(
      decodeOperation(operation({ stage: 'COMPLETED', response: { status: { code: 0 }, result: { exitCode: 1, executionMetadata: { worker: 'w', queuedTimestamp: at(0) } } } })),
    );
    const m = view.response!.result!.executionMetadata!;
    expect(m).toEqual({ worker: 'w', queuedTimestamp: '2024-01-01T00:00:00.000Z' });
  });

  it('shows a queued operation without a response', () => {
    const view = toOperationView(decodeOperation(operation({ stage: 'QUEUED' })));
    expect(view).toEqual({ name: 'operations/7b1c', done: false, stage: 'QUEUED', actionDigest: `${H('a')}/140` });
  });

  it('lists the MISSING blobs of a FAILED_PRECONDITION status', () => {
    const status = StatusError.missingBlobs([{ hash: H('b'), sizeBytes: 12 }]).toProto();
    const view = toOperationView(decodeOperation(operation({ stage: 'COMPLETED', response: { status } })));
    expect(view.response?.status).toMatchObject({ code: Code.FAILED_PRECONDITION, codeName: 'FAILED_PRECONDITION', missingBlobs: [`blobs/${H('b')}/12`] });
    expect(view.response).not.toHaveProperty('result');
    expect(isMissingInputs(view)).toBe(true);
    expect(isMissingInputs(toOperationView(decodeOperation(operation({ stage: 'COMPLETED', response: completed }))))).toBe(false);
  });
});

describe('formatOperation', () => {
  it('prints the seed layout, one tab per level, for a completed operation', () => {
    const text = formatOperation(toOperationView(decodeOperation(operation({ stage: 'COMPLETED', response: completed }))));
    expect(text).toBe(
      [
        'Operation: operations/7b1c',
        '\tDone: true',
        '\tMetadata:',
        '\t\tStage: COMPLETED',
        `\t\tActionDigest: ${H('a')}/140`,
        '\tExecResponse:',
        '\t\tStatus:',
        '\t\t\tCode: OK',
        '\t\tCached: false',
        '\t\tActionResult:',
        '\t\t\tExitCode: 0',
        '\t\t\tOutputFiles:',
        `\t\t\t\tout/tool ${H('2')}/100 [x]`,
        `\t\t\t\tout/z.txt ${H('1')}/6`,
        '\t\t\tOutputDirectories:',
        `\t\t\t\tgen tree=${H('3')}/85`,
        '\t\t\tOutputSymlinks:',
        '\t\t\t\tlatest -> out/z.txt',
        `\t\t\tStdoutDigest: ${H('4')}/3`,
        '\t\t\tExecutionMetadata:',
        '\t\t\t\tWorker: host:1',
        '\t\t\t\tQueueLatency: 250ms',
        '\t\t\t\tWorkerTotal: 1060ms',
        '\t\t\t\tInputFetch: 40ms',
        '\t\t\t\tExecution: 1000ms',
        '\t\t\t\tOutputUpload: 5ms',
        '',
      ].join('\n'),
    );
  });

  it('prints only the metadata while the operation runs', () => {
    const text = formatOperation(toOperationView(decodeOperation(operation({ stage: 'EXECUTING' }))));
    expect(text).toBe(['Operation: operations/7b1c', '\tDone: false', '\tMetadata:', '\t\tStage: EXECUTING', `\t\tActionDigest: ${H('a')}/140`, ''].join('\n'));
  });

  it('prints a failed status with its message and missing blobs', () => {
    const status = StatusError.missingBlobs([{ hash: H('b'), sizeBytes: 12 }], 'Failed to fetch inputs').toProto();
    const text = formatOperation(toOperationView(decodeOperation(operation({ stage: 'COMPLETED', response: { status } }))));
    expect(text).toContain(['\t\tStatus:', '\t\t\tCode: FAILED_PRECONDITION', '\t\t\tMessage: Failed to fetch inputs', '\t\t\tMissingBlobs:', `\t\t\t\tblobs/${H('b')}/12`].join('\n'));
    expect(text).not.toContain('ActionResult');
  });

  it('prints Operation.error when the server failed the operation itself', () => {
    const text = formatOperation(toOperationView(decodeOperation(operation({ stage: 'COMPLETED', error: StatusError.internal('worker vanished') }))));
    expect(text).toContain(['\tError:', '\t\tCode: INTERNAL', '\t\tMessage: worker vanished'].join('\n'));
  });
});

describe('formatOperation with empty outputs', () => {
  it('prints OutputFiles: [], OutputDirectories: [] and both empty stream digests, as the seed does', () => {
    const empty = { hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' };
    const text = formatOperation(
      toOperationView(decodeOperation(operation({ stage: 'COMPLETED', response: { status: {}, result: { exitCode: 0, stdoutDigest: empty, stderrDigest: empty } } }))),
    );
    expect(text).toContain(
      [
        '\t\tActionResult:',
        '\t\t\tExitCode: 0',
        '\t\t\tOutputFiles: []',
        '\t\t\tOutputDirectories: []',
        `\t\t\tStdoutDigest: ${empty.hash}/0`,
        `\t\t\tStderrDigest: ${empty.hash}/0`,
        '',
      ].join('\n'),
    );
    expect(text).not.toContain('OutputSymlinks');
  });
});

describe('formatOperationTable', () => {
  const views = [
    toOperationView(decodeOperation(operation({ stage: 'COMPLETED', response: completed }))),
    { name: 'operations/long-name-here', done: false, stage: 'QUEUED' },
  ];

  it('aligns columns under a header on a terminal', () => {
    expect(formatOperationTable(views, { terminal: true })).toBe(
      [
        `NAME                       STAGE      DONE   ACTION DIGEST`,
        `operations/7b1c            COMPLETED  true   ${H('a')}/140`,
        `operations/long-name-here  QUEUED     false`,
        '',
      ].join('\n'),
    );
  });

  it('prints tab-separated lines without a header in a pipe', () => {
    expect(formatOperationTable(views, { terminal: false })).toBe(`operations/7b1c\tCOMPLETED\ttrue\t${H('a')}/140\noperations/long-name-here\tQUEUED\tfalse\t\n`);
  });

  it('says so when there are no operations on a terminal, and prints nothing in a pipe', () => {
    expect(formatOperationTable([], { terminal: true })).toBe('No operations.\n');
    expect(formatOperationTable([], { terminal: false })).toBe('');
  });
});

describe('toFullOperationJson', () => {
  it('unpacks metadata, response and the status details inside the response', () => {
    const status = StatusError.missingBlobs([{ hash: H('b'), sizeBytes: 12 }], 'gone').toProto();
    const full = toFullOperationJson(operation({ stage: 'COMPLETED', response: { status, result: { exitCode: 3, stdoutRaw: new Uint8Array([104, 105]) } } }));
    expect(full).toEqual({
      name: 'operations/7b1c',
      done: true,
      metadata: { '@type': `type.googleapis.com/${METADATA}`, stage: 'COMPLETED', actionDigest: { hash: H('a'), sizeBytes: 140 } },
      response: {
        '@type': `type.googleapis.com/${RESPONSE}`,
        result: { exitCode: 3, stdoutRaw: 'aGk=' },
        status: {
          code: 9,
          message: 'gone',
          details: [{ '@type': 'type.googleapis.com/google.rpc.PreconditionFailure', violations: [{ type: 'MISSING', subject: `blobs/${H('b')}/12` }] }],
        },
      },
    });
  });

  it('keeps an Any of an unknown type as base64', () => {
    const full = toFullOperationJson({ name: 'x', done: false, metadata: { type_url: 'type.googleapis.com/example.Unknown', value: new Uint8Array([1, 2]) } });
    expect(full.metadata).toEqual({ '@type': 'type.googleapis.com/example.Unknown', value: 'AQI=' });
  });
});

describe('small helpers', () => {
  it('formats durations in whole milliseconds, as the seed does', () => {
    expect(formatMs(0.44)).toBe('0ms');
    expect(formatMs(4.5)).toBe('5ms');
    expect(formatMs(9.96)).toBe('10ms');
    expect(formatMs(1234.4)).toBe('1234ms');
  });

  it('treats an all-zero Timestamp as unset', () => {
    expect(timestampToMs({ seconds: 0, nanos: 0 })).toBeUndefined();
    expect(timestampToMs({ seconds: 2, nanos: 5e5 })).toBe(2000.5);
  });

  it('maps a StatusError to its view', () => {
    expect(toStatusView(StatusError.cancelled('stop'))).toEqual({ code: 1, codeName: 'CANCELLED', message: 'stop' });
    // proto3 leaves an OK status off the wire.
    expect(toStatusView(undefined)).toEqual({ code: 0, codeName: 'OK', message: '' });
  });
});

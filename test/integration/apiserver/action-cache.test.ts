import { afterEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { type Harness, expectStatus, pseudoRandomBytes, reapi, startHarness, unary, uploadBlobs } from './harness.js';

/** Client writes to the action cache are off by default; these tests exercise them. */
const WRITABLE = { capabilities: { actionCacheUpdateEnabled: true } };

const text = (s: string) => new TextEncoder().encode(s);
const actionDigestOf = (name: string, instanceName = '') =>
  encodeWithDigest(reapi.Action, { commandDigest: Digest.ofBytes(text(name)).toProto(), doNotCache: false }, { instanceName }).digest;

describe('apiserver ActionCache', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('answers NOT_FOUND for an action it has no result for', async () => {
    h = await startHarness(WRITABLE);
    await expectStatus(unary(h.actionCache, 'getActionResult', { actionDigest: actionDigestOf('never run').toProto() }), Code.NOT_FOUND);
  });

  it('stores a result, returns it, and inlines stdout and requested output files on request', async () => {
    h = await startHarness(WRITABLE);
    const stdout = text('hello from stdout\n');
    const stderr = text('warning\n');
    const outA = text('contents of a');
    const outB = pseudoRandomBytes(5000);
    const [stdoutDigest, stderrDigest, aDigest, bDigest] = await uploadBlobs(h, [stdout, stderr, outA, outB]);
    const actionDigest = actionDigestOf('build a and b');
    const result: reapi.IActionResult = {
      exitCode: 0,
      stdoutDigest: stdoutDigest!.toProto(),
      stderrDigest: stderrDigest!.toProto(),
      outputFiles: [
        { path: 'out/a', digest: aDigest!.toProto() },
        { path: 'out/b', digest: bDigest!.toProto(), isExecutable: true },
      ],
    };
    const stored = await unary<reapi.ActionResult>(h.actionCache, 'updateActionResult', { actionDigest: actionDigest.toProto(), actionResult: result });
    expect(stored.outputFiles.map((f) => f.path)).toEqual(['out/a', 'out/b']);

    const plain = await unary<reapi.ActionResult>(h.actionCache, 'getActionResult', { actionDigest: actionDigest.toProto() });
    expect(plain.stdoutDigest?.hash).toBe(stdoutDigest!.hash);
    expect(plain.stdoutRaw.length).toBe(0);
    expect(plain.outputFiles[1]!.isExecutable).toBe(true);

    const inlined = await unary<reapi.ActionResult>(h.actionCache, 'getActionResult', {
      actionDigest: actionDigest.toProto(),
      inlineStdout: true,
      inlineOutputFiles: ['out/b'],
    });
    expect(new TextDecoder().decode(inlined.stdoutRaw)).toBe('hello from stdout\n');
    expect(inlined.stderrRaw.length).toBe(0);
    expect(inlined.outputFiles[0]!.contents?.length ?? 0).toBe(0);
    expect(Buffer.from(inlined.outputFiles[1]!.contents!).equals(Buffer.from(outB))).toBe(true);
  });

  it('does not inline output files that would push the response past the message size budget', async () => {
    h = await startHarness(WRITABLE);
    const big1 = pseudoRandomBytes(2 * 1024 * 1024, 1);
    const big2 = pseudoRandomBytes(2 * 1024 * 1024, 2);
    // Upload each through its own batch: together they exceed the batch limit.
    const [d1] = await uploadBlobs(h, [big1]);
    const [d2] = await uploadBlobs(h, [big2]);
    const actionDigest = actionDigestOf('two big outputs');
    await unary(h.actionCache, 'updateActionResult', {
      actionDigest: actionDigest.toProto(),
      actionResult: { outputFiles: [{ path: 'one', digest: d1!.toProto() }, { path: 'two', digest: d2!.toProto() }] },
    });
    const res = await unary<reapi.ActionResult>(h.actionCache, 'getActionResult', {
      actionDigest: actionDigest.toProto(),
      inlineOutputFiles: ['one', 'two'],
    });
    expect(res.outputFiles[0]!.contents?.length).toBe(big1.length);
    expect(res.outputFiles[1]!.contents?.length ?? 0).toBe(0);
  });

  it('reports a cached result whose output blob is gone from the CAS as NOT_FOUND', async () => {
    h = await startHarness(WRITABLE);
    const [present] = await uploadBlobs(h, [text('present output')]);
    const gone = Digest.ofBytes(text('output that was never uploaded (or evicted)'));
    const actionDigest = actionDigestOf('partially evicted');
    await unary(h.actionCache, 'updateActionResult', {
      actionDigest: actionDigest.toProto(),
      actionResult: { outputFiles: [{ path: 'ok', digest: present!.toProto() }, { path: 'gone', digest: gone.toProto() }] },
    });
    const err = await expectStatus(unary(h.actionCache, 'getActionResult', { actionDigest: actionDigest.toProto() }), Code.NOT_FOUND);
    expect(err.message).toContain(gone.toString());
  });

  it('rejects a malformed action digest or output digest with BadRequest details', async () => {
    h = await startHarness(WRITABLE);
    const badAction = await expectStatus(
      unary(h.actionCache, 'getActionResult', { actionDigest: { hash: 'not-hex', sizeBytes: 1 } }),
      Code.INVALID_ARGUMENT,
    );
    expect(badAction.fieldViolations()[0]?.field).toBe('action_digest.hash');
    const badOutput = await expectStatus(
      unary(h.actionCache, 'updateActionResult', {
        actionDigest: actionDigestOf('x').toProto(),
        actionResult: { outputFiles: [{ path: 'f', digest: { hash: 'abc', sizeBytes: 3 } }] },
      }),
      Code.INVALID_ARGUMENT,
    );
    expect(badOutput.fieldViolations()[0]?.field).toBe('action_result.output_files[0].digest.hash');
    const missingResult = await expectStatus(unary(h.actionCache, 'updateActionResult', { actionDigest: actionDigestOf('x').toProto() }), Code.INVALID_ARGUMENT);
    expect(missingResult.fieldViolations()[0]?.field).toBe('action_result');
  });

  it('answers PERMISSION_DENIED to client updates by default (only the scheduler writes results)', async () => {
    h = await startHarness();
    const err = await expectStatus(
      unary(h.actionCache, 'updateActionResult', { actionDigest: actionDigestOf('y').toProto(), actionResult: { exitCode: 1 } }),
      Code.PERMISSION_DENIED,
    );
    expect(err.message).toContain('update_enabled');
  });

  it('keeps results of different instance names apart', async () => {
    h = await startHarness(WRITABLE);
    const actionDigest = actionDigestOf('same action');
    await unary(h.actionCache, 'updateActionResult', { instanceName: 'one', actionDigest: actionDigest.toProto(), actionResult: { exitCode: 3 } });
    const hit = await unary<reapi.ActionResult>(h.actionCache, 'getActionResult', { instanceName: 'one', actionDigest: actionDigest.toProto() });
    expect(hit.exitCode).toBe(3);
    await expectStatus(unary(h.actionCache, 'getActionResult', { instanceName: 'two', actionDigest: actionDigest.toProto() }), Code.NOT_FOUND);
  });
});

import { describe, expect, it } from 'vitest';
import { buildAction, buildCommand } from '../../../src/lib/cas/action-builder.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { reapi } from '../../../src/lib/proto/index.js';

describe('buildCommand', () => {
  it('encodes `sleep 17` as exactly the two argument fields', () => {
    const { bytes, digest } = buildCommand({ arguments: ['sleep', '17'] });
    expect(Buffer.from(bytes).toString('hex')).toBe(Buffer.from([0x0a, 5, ...Buffer.from('sleep'), 0x0a, 2, ...Buffer.from('17')]).toString('hex'));
    expect(digest.sizeBytes).toBe(11);
  });

  it('gives the same digest whatever order environment, platform and outputs come in', () => {
    const a = buildCommand({
      arguments: ['cc'],
      environmentVariables: { PATH: '/bin', LANG: 'C', A: '1' },
      outputFiles: ['z.o', 'a.o', 'a.o'],
      platformProperties: [{ name: 'os', value: 'linux' }, { name: 'arch', value: 'x86' }, { name: 'arch', value: 'arm' }],
    });
    const b = buildCommand({
      arguments: ['cc'],
      environmentVariables: { A: '1', LANG: 'C', PATH: '/bin' },
      outputFiles: ['a.o', 'z.o'],
      platformProperties: [{ name: 'arch', value: 'arm' }, { name: 'os', value: 'linux' }, { name: 'arch', value: 'x86' }],
    });
    expect(a.digest.key).toBe(b.digest.key);
    const decoded = reapi.Command.decode(a.bytes);
    expect(decoded.environmentVariables.map((e) => e.name)).toEqual(['A', 'LANG', 'PATH']);
    expect(decoded.platform?.properties.map((p) => `${p.name}=${p.value}`)).toEqual(['arch=arm', 'arch=x86', 'os=linux']);
    expect(decoded.outputFiles).toEqual(['a.o', 'z.o']);
  });

  it.each([['/abs'], ['../up'], ['a/./b'], ['']])('rejects the output path %j', (path) => {
    const err = (() => {
      try {
        buildCommand({ arguments: ['x'], outputFiles: [path] });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(StatusError);
    expect((err as StatusError).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('rejects an empty argument list', () => {
    expect(() => buildCommand({ arguments: [] })).toThrow(/argument list is empty/);
  });
});

describe('buildAction', () => {
  const command = Digest.ofBytes(new TextEncoder().encode('command'));

  it('omits defaults so the encoding matches other REAPI clients', () => {
    const { bytes } = buildAction({ commandDigest: command, inputRootDigest: Digest.empty() });
    // command_digest (field 1) and input_root_digest (field 2, an empty Digest message: the empty blob).
    const commandField = Buffer.concat([Buffer.from([0x0a, 64]), Buffer.from(command.hash), Buffer.from([0x10, 7])]);
    const emptyField = Buffer.concat([Buffer.from([0x0a, 64]), Buffer.from(Digest.empty().hash)]);
    const expected = Buffer.concat([Buffer.from([0x0a, commandField.length]), commandField, Buffer.from([0x12, emptyField.length]), emptyField]);
    expect(Buffer.from(bytes).toString('hex')).toBe(expected.toString('hex'));
  });

  it('splits the timeout into seconds and nanos and keeps do_not_cache and salt', () => {
    const { bytes } = buildAction({ commandDigest: command, inputRootDigest: Digest.empty(), timeoutMs: 1500, doNotCache: true, salt: new Uint8Array([1, 2]) });
    const decoded = reapi.Action.decode(bytes);
    expect(decoded.timeout).toMatchObject({ seconds: 1, nanos: 500_000_000 });
    expect(decoded.doNotCache).toBe(true);
    expect([...decoded.salt]).toEqual([1, 2]);
  });
});

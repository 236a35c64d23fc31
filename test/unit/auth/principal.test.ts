import { describe, expect, it } from 'vitest';
import { authorize, instanceGlobMatches, type Principal } from '../../../src/lib/auth/principal.js';
import { bearerToken, looksLikeJwt } from '../../../src/lib/auth/authenticator.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';

const principal = (permissions: Principal['permissions'] extends ReadonlySet<infer P> ? P[] : never, instances: string[]): Principal => ({
  name: 'ci',
  permissions: new Set(permissions),
  instances,
});

function refusal(fn: () => void): StatusError | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err as StatusError;
  }
}

describe('instance globs', () => {
  it('match whole names, with * for any run of characters', () => {
    expect(instanceGlobMatches('main', 'main')).toBe(true);
    expect(instanceGlobMatches('main', 'main2')).toBe(false);
    expect(instanceGlobMatches('team/*', 'team/a/b')).toBe(true);
    expect(instanceGlobMatches('team/*', 'other/team/a')).toBe(false);
    expect(instanceGlobMatches('*', '')).toBe(true);
    expect(instanceGlobMatches('a.b', 'axb')).toBe(false);
    expect(instanceGlobMatches('', '')).toBe(true);
  });
});

describe('authorize', () => {
  it('passes with the permission on an allowed instance', () => {
    expect(refusal(() => authorize(principal(['cas.read'], ['main']), ['cas.read'], 'main'))).toBeUndefined();
  });

  it('refuses a missing permission with PERMISSION_DENIED naming it', () => {
    const err = refusal(() => authorize(principal(['cas.read'], ['main']), ['ac.write'], 'main'));
    expect(err?.code).toBe(Code.PERMISSION_DENIED);
    expect(err?.message).toContain('ac.write');
  });

  it('refuses an instance outside the globs, with a bounded message', () => {
    const err = refusal(() => authorize(principal(['cas.read'], ['main']), ['cas.read'], 'x'.repeat(5000)));
    expect(err?.code).toBe(Code.PERMISSION_DENIED);
    expect(err!.message.length).toBeLessThan(300);
  });

  it('lets admin stand for every permission, still within its instances', () => {
    expect(refusal(() => authorize(principal(['admin'], ['*']), ['ac.write'], 'anything'))).toBeUndefined();
    expect(refusal(() => authorize(principal(['admin'], ['main']), ['ac.write'], 'other'))?.code).toBe(Code.PERMISSION_DENIED);
  });
});

describe('bearerToken', () => {
  it('takes the token of "Bearer <token>", any case of the scheme', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer  abc ')).toBe('abc');
  });

  it('refuses a missing or malformed header with UNAUTHENTICATED that does not echo it', () => {
    expect(refusal(() => bearerToken(undefined))?.code).toBe(Code.UNAUTHENTICATED);
    const err = refusal(() => bearerToken('Basic dXNlcjpzZWNyZXQ='));
    expect(err?.code).toBe(Code.UNAUTHENTICATED);
    expect(err?.message).not.toContain('dXNlcjpzZWNyZXQ=');
  });

  it('tells JWTs from opaque tokens', () => {
    expect(looksLikeJwt('eyJh.eyJz.c2ln')).toBe(true);
    expect(looksLikeJwt('bzt_abcdef')).toBe(false);
  });
});

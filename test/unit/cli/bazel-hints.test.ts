import { describe, expect, it } from 'vitest';
import { bazelHints } from '../../../src/lib/cli/bazel-hints.js';

const tls = { cert_file: 'server.pem', key_file: 'server.key' };

describe('bazelHints', () => {
  it('says grpc:// and nothing more for a plaintext server without auth', () => {
    expect(bazelHints({ schedulerPort: 9099, apiserverPort: 12100 })).toEqual([
      '  Bazel, remote execution:  bazel build --remote_executor=grpc://localhost:9099 //...',
      '  Bazel, remote cache only: bazel build --remote_cache=grpc://localhost:12100 //...',
    ]);
  });

  it('says grpcs:// and --tls_certificate on TLS ports, client certificate flags under mTLS', () => {
    const [exec, cache] = bazelHints({ schedulerPort: 9099, apiserverPort: 12100, schedulerTls: { ...tls, client_ca_file: 'ca.pem' }, apiserverTls: tls });
    expect(exec).toContain('--remote_executor=grpcs://localhost:9099 --tls_certificate=<CA of the server certificate> --tls_client_certificate=<client.pem> --tls_client_key=<client.key> //...');
    expect(cache).toContain('--remote_cache=grpcs://localhost:12100 --tls_certificate=<CA of the server certificate> //...');
    expect(cache).not.toContain('tls_client');
  });

  it('adds the Authorization header when tokens or JWTs are required', () => {
    for (const auth of [{ tokens_file: 'tokens.json' }, { jwt: { jwks: 'jwks.json' } }]) {
      for (const line of bazelHints({ schedulerPort: 1, apiserverPort: 2, auth })) expect(line).toContain('--remote_header=Authorization="Bearer <token>" //...');
    }
    for (const line of bazelHints({ schedulerPort: 1, apiserverPort: 2, auth: {} })) expect(line).not.toContain('remote_header');
  });
});

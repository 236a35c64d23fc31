/**
 * The "how to point Bazel at it" lines `serve all` prints when ready. They follow the server's
 * security settings, because a hint that says `grpc://` to a TLS port, or leaves out the token of a
 * server that requires one, sends the user to a failing first build.
 */
import type { TlsSection } from '../config/config.js';
import type { AuthSection } from '../auth/create-authenticator.js';

export interface BazelHintInput {
  schedulerPort: number;
  apiserverPort: number;
  schedulerTls?: TlsSection;
  apiserverTls?: TlsSection;
  auth?: AuthSection;
}

function flags(tls: TlsSection | undefined, auth: AuthSection | undefined): string {
  const parts: string[] = [];
  // Bazel trusts only the CA given here; the server's own certificate file is not that CA.
  if (tls) parts.push('--tls_certificate=<CA of the server certificate>');
  if (tls?.client_ca_file !== undefined) parts.push('--tls_client_certificate=<client.pem> --tls_client_key=<client.key>');
  if (auth?.tokens_file !== undefined || auth?.jwt !== undefined) parts.push('--remote_header=Authorization="Bearer <token>"');
  return parts.map((p) => ` ${p}`).join('');
}

/** Lines (without trailing newlines) for remote execution and remote cache. */
export function bazelHints(input: BazelHintInput): string[] {
  const scheme = (tls: TlsSection | undefined) => (tls ? 'grpcs' : 'grpc');
  return [
    `  Bazel, remote execution:  bazel build --remote_executor=${scheme(input.schedulerTls)}://localhost:${input.schedulerPort}${flags(input.schedulerTls, input.auth)} //...`,
    `  Bazel, remote cache only: bazel build --remote_cache=${scheme(input.apiserverTls)}://localhost:${input.apiserverPort}${flags(input.apiserverTls, input.auth)} //...`,
  ];
}

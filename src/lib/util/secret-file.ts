/**
 * Reading a file that holds one secret (a bearer token): the worker's `worker.token_file` and a
 * grpc store's `token_file`. Errors name the file and why it is unusable, never its content.
 */
import { readFileSync } from 'node:fs';

/** The secret in `file`: its first line, trimmed. Throws when unreadable or empty. */
export function readSecretFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const secret = text.split('\n')[0]!.trim();
  if (secret === '') throw new Error('is empty');
  return secret;
}

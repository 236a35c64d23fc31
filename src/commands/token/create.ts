import { Flags } from '@oclif/core';
import { isPermission, type Permission, PERMISSIONS } from '../../lib/auth/principal.js';
import { createTokenEntry, type TokenEntry } from '../../lib/auth/token-file.js';
import { BzutilCommand, usageError } from '../../lib/cli/base-command.js';
import { prose } from '../../lib/cli/help-text.js';

export interface TokenCreateResult {
  /** The new token: shown once, stored nowhere. */
  token: string;
  /** What to add to the `tokens` list of the token file (`--auth_tokens`); holds only the token's SHA-256. */
  entry: TokenEntry;
}

export default class TokenCreate extends BzutilCommand<TokenCreateResult> {
  static override summary = 'Make a new bearer token and print it with its token-file entry.';
  static override description = prose(`Prints the token (line 1) and the JSON entry for the "tokens" list of the file given to
serve --auth_tokens (line 2). The entry holds only the token's SHA-256, so the file reveals no
credential; the token itself is shown this once. Add the entry to the file and send SIGHUP to the
servers to load it. Clients send the token with --token or BZUTIL_TOKEN, Bazel with
--remote_header=Authorization=Bearer <token>.

Permissions: ${PERMISSIONS.join(', ')} (admin implies the others). Instances may use * globs.`);
  static override examples = [
    '<%= config.bin %> <%= command.id %> --name ci --instances main --permissions cas.read,cas.write,ac.read,execute,operations.read',
    '<%= config.bin %> <%= command.id %> --name ops --instances "*" --permissions admin --json',
  ];
  static override flags = {
    name: Flags.string({ summary: 'Name of the credential, shown in logs and refusals.', required: true }),
    instances: Flags.string({ summary: 'Instance names (or * globs) the token may use; "" is the default instance.', multiple: true, delimiter: ',', required: true }),
    permissions: Flags.string({ summary: `What the token may do: ${PERMISSIONS.join(', ')}.`, multiple: true, delimiter: ',', required: true }),
  };

  async run(): Promise<TokenCreateResult> {
    const { flags } = await this.parse(TokenCreate);
    const unknown = flags.permissions.filter((p) => !isPermission(p));
    if (unknown.length > 0) throw usageError(`Invalid --permissions: ${unknown.map((p) => JSON.stringify(p)).join(', ')} (expected among ${PERMISSIONS.join(', ')})`);
    const permissions = [...new Set(flags.permissions)] as Permission[];
    const result = createTokenEntry({ name: flags.name, instances: flags.instances, permissions });
    if (!this.jsonEnabled()) {
      process.stdout.write(`${result.token}\n${JSON.stringify(result.entry)}\n`);
      if (process.stderr.isTTY) process.stderr.write('Line 1 is the token (shown only now); line 2 goes into the "tokens" list of the --auth_tokens file.\n');
    }
    return result;
  }
}

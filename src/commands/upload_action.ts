import { Flags } from '@oclif/core';
import { buildAction } from '../lib/cas/action-builder.js';
import { BzutilCommand, usageError } from '../lib/cli/base-command.js';
import { keyValueFlag, parseKeyValues, remoteFlags } from '../lib/cli/flags.js';
import { Digest } from '../lib/digest/digest.js';
import { StatusError, toStatusError } from '../lib/errors/status-error.js';
import type { reapi } from '../lib/proto/index.js';
import { prose } from '../lib/cli/help-text.js';

export interface UploadActionResult {
  /** `<hash>/<size>` of the stored Action: pass it to execute --action. */
  digest: string;
  hash: string;
  sizeBytes: number;
  /** The Action as stored; `salt` in base64 (protobuf JSON convention). */
  action: Omit<reapi.IAction, 'salt'> & { salt?: string };
}

export default class UploadAction extends BzutilCommand<UploadActionResult> {
  static override summary = 'Store an Action (command + input root + timeout) in the CAS and print its digest.';
  static override description = prose(`Builds a canonical REAPI Action from a Command digest (from upload_command) and an input root
Directory digest (from upload_dir; the empty directory when omitted). Both must already be in the
CAS: a missing one fails with exit code 4 instead of producing an action that cannot run.

--salt takes hex (an even number of hex digits) or, otherwise, text; a different salt makes a
different action digest, which bypasses earlier cache entries.`);
  static override examples = [
    {
      description: 'The walkthrough: a command and an input root',
      command: '<%= config.bin %> <%= command.id %> --command=$(bzutil upload_command sleep 17) --input_root=$(bzutil upload_dir ./inputs)',
    },
    { description: 'With a 60 s timeout, never cached', command: '<%= config.bin %> <%= command.id %> --command=<hash>/<size> --timeout=60 --no_cache --platform_props OSFamily=linux' },
  ];
  static override flags = {
    ...remoteFlags,
    command: Flags.string({ summary: 'Digest <hash>/<size> of the Command.', required: true }),
    input_root: Flags.string({ summary: 'Digest <hash>/<size> of the input root Directory (from upload_dir); the empty directory when omitted.', aliases: ['input-root'] }),
    timeout: Flags.string({ summary: 'Execution timeout in seconds (decimals allowed).' }),
    no_cache: Flags.boolean({ summary: 'Set do_not_cache: never take the result from, or store it in, the action cache.', aliases: ['no-cache'], default: false }),
    platform_props: keyValueFlag('A platform property as name=value.', ['platform-props']),
    salt: Flags.string({ summary: 'Salt: hex digits, or any other text taken as UTF-8.' }),
  };

  async run(): Promise<UploadActionResult> {
    const { flags } = await this.parse(UploadAction);
    const commandDigest = this.parseDigest(flags.command, '--command', flags);
    const inputRootDigest = flags.input_root
      ? this.parseDigest(flags.input_root, '--input_root', flags)
      : Digest.empty({ instanceName: flags.instance_name, digestFunction: flags.digest_function });
    let timeoutMs: number | undefined;
    if (flags.timeout !== undefined) {
      const seconds = Number(flags.timeout);
      if (!Number.isFinite(seconds) || seconds <= 0) throw usageError(`Invalid --timeout ${JSON.stringify(flags.timeout)}: expected a positive number of seconds`);
      timeoutMs = Math.round(seconds * 1000);
    }
    let built: ReturnType<typeof buildAction>;
    try {
      built = buildAction(
        {
          commandDigest,
          inputRootDigest,
          timeoutMs,
          doNotCache: flags.no_cache,
          salt: flags.salt === undefined ? undefined : parseSalt(flags.salt),
          platformProperties: parseKeyValues(flags.platform_props, 'platform_props'),
        },
        { instanceName: flags.instance_name, digestFunction: flags.digest_function },
      );
    } catch (err) {
      throw usageError(toStatusError(err).message, err);
    }

    const cas = await this.connectCas(flags);
    const missing = await cas.findMissingBlobs([commandDigest, inputRootDigest]);
    if (missing.length > 0) {
      const names = missing.map((d) => (d.equals(commandDigest) ? `command ${d}` : `input root ${d}`));
      throw StatusError.missingBlobs(missing, `Failed to upload the action: the CAS lacks the ${names.join(' and the ')}; upload it first`);
    }
    await cas.uploadBlobs([{ digest: built.digest, data: built.bytes }]);
    this.log(built.digest.toString());
    const { salt, ...action } = built.message;
    return {
      digest: built.digest.toString(),
      hash: built.digest.hash,
      sizeBytes: built.digest.sizeBytes,
      action: salt ? { ...action, salt: Buffer.from(salt).toString('base64') } : action,
    };
  }
}

/** Hex when the text is an even number of hex digits, otherwise the text's UTF-8 bytes. */
function parseSalt(text: string): Uint8Array {
  return /^(?:[0-9a-fA-F]{2})+$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'utf8');
}

import { Flags } from '@oclif/core';
import { buildCommand } from '../lib/cas/action-builder.js';
import { BzutilCommand, usageError } from '../lib/cli/base-command.js';
import { keyValueFlag, listFlag, parseKeyValues, remoteFlags } from '../lib/cli/flags.js';
import { toStatusError } from '../lib/errors/status-error.js';
import type { reapi } from '../lib/proto/index.js';
import { prose } from '../lib/cli/help-text.js';

export interface UploadCommandResult {
  /** `<hash>/<size>` of the stored Command. */
  digest: string;
  hash: string;
  sizeBytes: number;
  command: reapi.ICommand;
}

export default class UploadCommand extends BzutilCommand<UploadCommandResult> {
  static override summary = 'Store a Command (argv, environment, outputs) in the CAS and print its digest.';
  static override description = prose(`Builds a canonical REAPI Command from the arguments after the flags, so the same inputs always
give the same digest: environment variables are sorted by name, platform properties by name then
value, output paths sorted. Pass the digest to upload_action --command.

Put "--" before the command when its arguments start with "-".`);
  static override examples = [
    { description: 'A command that sleeps 17 seconds', command: '<%= config.bin %> <%= command.id %> sleep 17' },
    {
      description: 'With environment, outputs and a platform',
      command: '<%= config.bin %> <%= command.id %> --env PATH=/bin:/usr/bin --env LANG=C --output_files out.txt --platform_props OSFamily=linux -- sh -c "echo hi > out.txt"',
    },
    { description: 'Machine-readable', command: '<%= config.bin %> <%= command.id %> --json -- true' },
  ];
  static override usage = '<%= command.id %> [FLAGS] [--] PROGRAM [ARG...]';
  static override strict = false;
  static override flags = {
    ...remoteFlags,
    env: keyValueFlag('An environment variable as name=value.', []),
    output_files: listFlag('Output files, relative to the working directory (REAPI v2.0 field).', ['output-files']),
    output_dirs: listFlag('Output directories, relative to the working directory (REAPI v2.0 field).', ['output-dirs']),
    output_paths: listFlag('Output paths, files or directories (REAPI v2.1 field).', ['output-paths']),
    platform_props: keyValueFlag('A platform property as name=value.', ['platform-props']),
    working_dir: Flags.string({ summary: 'Working directory of the command, relative to the input root.', aliases: ['working-dir'] }),
  };

  async run(): Promise<UploadCommandResult> {
    const { argv, flags } = await this.parse(UploadCommand);
    const args = (argv as string[]).filter((a, i) => !(i === 0 && a === '--'));
    if (args.length === 0) throw usageError('Failed to build the command: give the program and its arguments, e.g. "sleep 17"');
    let built: ReturnType<typeof buildCommand>;
    try {
      const env = Object.fromEntries(parseKeyValues(flags.env, 'env').map((p) => [p.name, p.value]));
      built = buildCommand(
        {
          arguments: args,
          environmentVariables: env,
          outputFiles: flags.output_files,
          outputDirectories: flags.output_dirs,
          outputPaths: flags.output_paths,
          platformProperties: parseKeyValues(flags.platform_props, 'platform_props'),
          workingDirectory: flags.working_dir,
        },
        { instanceName: flags.instance_name, digestFunction: flags.digest_function },
      );
    } catch (err) {
      throw usageError(toStatusError(err).message, err);
    }
    const cas = await this.connectCas(flags);
    await cas.uploadBlobs([{ digest: built.digest, data: built.bytes }]);
    this.log(built.digest.toString());
    return { digest: built.digest.toString(), hash: built.digest.hash, sizeBytes: built.digest.sizeBytes, command: built.message };
  }
}

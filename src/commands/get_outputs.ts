import { Flags } from '@oclif/core';
import type { CasClient } from '../lib/client/cas-client.js';
import { ActionCacheClient } from '../lib/client/action-cache-client.js';
import { decodeOperation } from '../lib/client/execution-client.js';
import { usageError } from '../lib/cli/base-command.js';
import { type DownloadedOutputs, downloadActionOutputs, isEmptyOrAbsent } from '../lib/cli/download-outputs.js';
import { ExecutionCommand, schedulerFlags } from '../lib/cli/execution-command.js';
import { toStatusView } from '../lib/cli/operation-format.js';
import { createProgress } from '../lib/cli/progress.js';
import { StatusError } from '../lib/errors/status-error.js';
import type { reapi } from '../lib/proto/index.js';
import { prose } from '../lib/cli/help-text.js';
import { compressFlag } from '../lib/cli/flags.js';

export interface GetOutputsResult extends DownloadedOutputs {
  /** The operation the result came from (with --name). */
  name?: string;
  /** The action whose cached result was used (with --action). */
  actionDigest?: string;
  /** The destination directory. */
  output: string;
  exitCode: number;
}

export default class GetOutputs extends ExecutionCommand<GetOutputsResult> {
  static override summary = "Download an action's outputs, stdout and stderr into a directory.";
  static override description = prose(`Takes the ActionResult of a done operation (--name, as printed by execute) or the cached result
of an action (--action, from the action cache) and recreates it under -o DIR: DIR/stdout and
DIR/stderr, every output file at its path with its executable bit, every output directory from its
Tree, every output symlink. Each file's hash is verified as it is written; large files stream.

The blobs come from the CAS at --cas, which defaults to the scheduler's address (the scheduler
serves the CAS too). DIR must be empty or absent unless --force, so that nothing is overwritten by
accident. Every path in the result is checked before anything is written.`);
  static override examples = [
    { description: 'After execute --wait', command: '<%= config.bin %> <%= command.id %> --name=operations/5c1e2d4a-... -o ./out' },
    { description: 'From the action cache', command: '<%= config.bin %> <%= command.id %> --action=<hash>/<size> -o ./out' },
    { description: 'Blobs from the apiserver', command: '<%= config.bin %> <%= command.id %> --name=operations/5c1e... -o ./out --cas=localhost:12100' },
  ];
  static override flags = {
    ...schedulerFlags,
    compress: compressFlag,
    cas: Flags.string({
      summary: 'Address of the CAS holding the outputs; defaults to --scheduler (the scheduler serves the CAS too). Alias: --cas_addr.',
      aliases: ['cas_addr', 'cas-addr'],
      helpGroup: 'REMOTE',
    }),
    name: Flags.string({ summary: 'Operation whose result to download (must be done): operations/<uuid> or the bare <uuid>.', exactlyOne: ['name', 'action'] }),
    action: Flags.string({ summary: 'Action digest <hash>/<size> whose cached result to download.', exactlyOne: ['name', 'action'] }),
    output: Flags.string({ char: 'o', summary: 'Directory to write into (created if absent).', required: true }),
    force: Flags.boolean({ summary: 'Write into a non-empty directory, replacing whatever is at stdout, stderr and the output paths.', default: false }),
  };

  async run(): Promise<GetOutputsResult> {
    const { flags } = await this.parse(GetOutputs);
    const actionDigest = flags.action ? this.parseDigest(flags.action, '--action', flags) : undefined;
    if (!flags.force && !(await isEmptyOrAbsent(flags.output))) {
      throw usageError(`Failed to download the outputs: ${JSON.stringify(flags.output)} is not empty; pass --force to write into it`);
    }
    const casFlags = {
      cas: flags.cas ?? flags.scheduler,
      instance_name: flags.instance_name,
      digest_function: flags.digest_function,
      rpc_timeout: flags.rpc_timeout,
      compress: flags.compress,
    };
    let result: reapi.IActionResult;
    let cas: CasClient;
    if (flags.name) {
      const client = await this.connectScheduler(flags);
      const op = decodeOperation(await client.getOperation(flags.name));
      if (!op.done) {
        throw StatusError.failedPrecondition(`Failed to download the outputs of ${op.name}: it is not done yet (${op.stage}); wait with: bzutil wait_execution --name=${op.name}`);
      }
      if (op.error) throw new StatusError(op.error.code, `Failed to download the outputs of ${op.name}: the operation failed: ${op.error.message}`, op.error.details);
      if (!op.response?.result) {
        const status = toStatusView(op.response?.status);
        throw StatusError.failedPrecondition(`Failed to download the outputs of ${op.name}: it has no result (${status.codeName}: ${status.message})`);
      }
      result = op.response.result;
      cas = await this.connectCas(casFlags);
    } else {
      cas = await this.connectCas(casFlags);
      const actionCache = new ActionCacheClient(cas.connection, { instanceName: flags.instance_name, digestFunction: flags.digest_function });
      result = await actionCache.getActionResult(actionDigest!);
    }

    const progress = createProgress(`Downloading the outputs into ${flags.output}`, !this.jsonEnabled());
    let downloaded: DownloadedOutputs;
    try {
      downloaded = await downloadActionOutputs(cas, result, flags.output, { replace: flags.force });
    } finally {
      progress.stop();
    }
    for (const line of describeDownload(downloaded)) this.log(line);
    const out: GetOutputsResult = { ...downloaded, output: flags.output, exitCode: result.exitCode ?? 0 };
    if (flags.name) out.name = flags.name;
    if (actionDigest) out.actionDigest = actionDigest.toString();
    return out;
  }
}

/** One line per thing written, for people. */
function describeDownload(d: DownloadedOutputs): string[] {
  const lines: string[] = [];
  if (d.stdout) lines.push(`${d.stdout}`);
  if (d.stderr) lines.push(`${d.stderr}`);
  for (const f of d.files) lines.push(`${f.path}${f.isExecutable ? ' [x]' : ''}`);
  for (const dir of d.directories) lines.push(`${dir.path}/ (${count(dir.files, 'file')}, ${count(dir.directories, 'directory', 'directories')}, ${count(dir.symlinks, 'symlink')})`);
  for (const s of d.symlinks) lines.push(`${s.path} -> ${s.target}`);
  if (lines.length === 0) lines.push('The action produced no outputs.');
  return lines;
}

function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

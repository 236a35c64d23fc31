import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Args, Flags } from '@oclif/core';
import { BzutilCommand, usageError } from '../lib/cli/base-command.js';
import { remoteFlags } from '../lib/cli/flags.js';
import { type Progress, TransferMeter, createProgress, formatBytes } from '../lib/cli/progress.js';
import type { CasClient } from '../lib/client/cas-client.js';
import type { Digest } from '../lib/digest/digest.js';
import { downloadTree } from '../lib/client/download-tree.js';
import { newHasher } from '../lib/digest/digest-function.js';
import { Code, StatusError } from '../lib/errors/status-error.js';
import { prose } from '../lib/cli/help-text.js';

export interface DownloadResult {
  digest: string;
  /** Where it was written; absent when streamed to stdout. */
  path?: string;
  /** For --tree: what was created. */
  files?: number;
  directories?: number;
  symlinks?: number;
}

export default class Download extends BzutilCommand<DownloadResult> {
  static override summary = 'Download a blob to a file or stdout, or a Directory tree into a directory.';
  static override description = prose(`A blob is streamed (any size, constant memory) and its hash verified; with -o the file only
appears once verified. Without -o the blob goes to stdout, which must then not be a terminal.

With --tree the digest names a Directory (e.g. from upload_dir) and the whole tree is recreated
under -o, refusing entry names and symlinks that would escape it.`);
  static override examples = [
    { description: 'To a file', command: '<%= config.bin %> <%= command.id %> <hash>/<size> -o out.bin' },
    { description: 'To stdout', command: '<%= config.bin %> <%= command.id %> <hash>/<size> | less' },
    { description: 'A whole input root', command: '<%= config.bin %> <%= command.id %> --tree <hash>/<size> -o ./inputs' },
  ];
  static override args = {
    digest: Args.string({ description: 'Digest <hash>/<size> of the blob (or Directory with --tree).', required: true }),
  };
  static override flags = {
    ...remoteFlags,
    output: Flags.string({ char: 'o', summary: 'File (or, with --tree, directory) to write.' }),
    tree: Flags.boolean({ summary: 'Treat the digest as a Directory and download the whole tree.', default: false }),
  };

  async run(): Promise<DownloadResult> {
    const { args, flags } = await this.parse(Download);
    const digest = this.parseDigest(args.digest, 'digest', flags);
    if (flags.tree && !flags.output) throw usageError('Failed to download the tree: --tree needs -o DIR');
    if (!flags.output && (process.stdout.isTTY || this.jsonEnabled())) {
      throw usageError('Failed to download the blob: give -o FILE (stdout is a terminal or carries --json output)');
    }
    const cas = await this.connectCas(flags);
    const meter = new TransferMeter('Downloaded');
    const progress = createProgress(`Downloading ${digest} (${formatBytes(digest.sizeBytes)})`, !this.jsonEnabled());
    try {
      return await this.download(cas, digest, flags, meter, progress);
    } finally {
      progress.stop();
    }
  }

  private async download(
    cas: CasClient,
    digest: Digest,
    flags: { tree: boolean; output?: string },
    meter: TransferMeter,
    progress: Progress,
  ): Promise<DownloadResult> {
    if (flags.tree) {
      const result = await downloadTree(cas, digest, flags.output!);
      this.log(flags.output!);
      return { digest: digest.toString(), path: flags.output!, ...result };
    }
    if (flags.output) {
      await cas.downloadToFile(digest, flags.output);
      progress.succeed(meter.add(digest.sizeBytes).text());
      this.log(flags.output);
      return { digest: digest.toString(), path: flags.output };
    }
    // To stdout: stream with backpressure, verifying as we go. A mismatch is reported after the
    // bytes were written, as the exit code; there is no way to take them back from a pipe.
    const hasher = newHasher(digest.digestFunction);
    let sizeBytes = 0;
    const source = cas.readStream(digest);
    await pipeline(
      Readable.from(
        (async function* () {
          for await (const data of source) {
            hasher.update(data);
            sizeBytes += data.length;
            progress.update(meter.addBytes(data.length).text());
            yield data;
          }
        })(),
      ),
      process.stdout,
      { end: false },
    );
    const hash = hasher.digest('hex');
    if (hash !== digest.hash || sizeBytes !== digest.sizeBytes) {
      throw new StatusError(Code.DATA_LOSS, `Failed to download blob ${digest}: received ${hash}/${sizeBytes}`);
    }
    return { digest: digest.toString() };
  }
}

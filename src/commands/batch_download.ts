import { join } from 'node:path';
import { Flags } from '@oclif/core';
import { BzutilCommand } from '../lib/cli/base-command.js';
import { remoteFlags } from '../lib/cli/flags.js';
import { TransferMeter, createProgress, formatBytes } from '../lib/cli/progress.js';

export interface BatchDownloadResult {
  files: { digest: string; path: string }[];
}

export default class BatchDownload extends BzutilCommand<BatchDownloadResult> {
  static override summary = 'Download blobs into a directory, each in a file named by its hash.';
  static override description = 'Small blobs are fetched in batches, large ones streamed to disk; every blob is hash-verified before it appears under its name.';
  static override examples = [{ description: 'Fetch two blobs into ./out', command: '<%= config.bin %> <%= command.id %> --digests <hash>/<size>,<hash>/<size> --dir ./out' }];
  static override flags = {
    ...remoteFlags,
    digests: Flags.string({ summary: 'Digests <hash>/<size>, comma-separated or repeated.', required: true, multiple: true, delimiter: ',' }),
    dir: Flags.string({ summary: 'Directory to write the blobs into (created if needed).', required: true }),
  };

  async run(): Promise<BatchDownloadResult> {
    const { flags } = await this.parse(BatchDownload);
    const digests = flags.digests.map((d) => this.parseDigest(d, 'digest in --digests', flags));
    const cas = await this.connectCas(flags);
    const items = digests.map((digest) => ({ digest, path: join(flags.dir, digest.hash) }));
    const meter = new TransferMeter('Downloaded');
    const total = digests.reduce((n, d) => n + d.sizeBytes, 0);
    const progress = createProgress(`Downloading ${digests.length} blobs (${formatBytes(total)})`, !this.jsonEnabled());
    try {
      await cas.downloadToFiles(items);
      for (const d of digests) meter.add(d.sizeBytes);
      progress.succeed(meter.text());
    } finally {
      progress.stop();
    }
    const files = items.map((i) => ({ digest: i.digest.toString(), path: i.path }));
    for (const f of files) this.log(`${f.digest} ${f.path}`);
    return { files };
  }
}

import { Flags } from '@oclif/core';
import { BzutilCommand } from '../lib/cli/base-command.js';
import { remoteFlags } from '../lib/cli/flags.js';
import { requireLocalDirectory } from '../lib/cli/local-input.js';
import { TransferMeter, createProgress } from '../lib/cli/progress.js';
import { buildDirectoryTree } from '../lib/cas/merkle.js';
import { prose } from '../lib/cli/help-text.js';

export interface BatchUploadResult {
  blobs: { digest: string; path: string }[];
  uploadedBlobs: number;
  uploadedBytes: number;
  skippedBlobs: number;
}

export default class BatchUpload extends BzutilCommand<BatchUploadResult> {
  static override summary = 'Upload every file under a directory as a blob and print "<digest> <path>" lines.';
  static override description = prose(`Unlike upload_dir, no Directory messages are stored: each file becomes a plain blob. Only blobs
the CAS lacks are sent (small ones batched, large ones streamed).`);
  static override examples = [{ description: 'Upload the files of ./blobs', command: '<%= config.bin %> <%= command.id %> --dir ./blobs' }];
  static override flags = {
    ...remoteFlags,
    dir: Flags.directory({ summary: 'Directory whose files to upload (recursively).', required: true }),
  };

  async run(): Promise<BatchUploadResult> {
    const { flags } = await this.parse(BatchUpload);
    await requireLocalDirectory(flags.dir, '--dir');
    const cas = await this.connectCas(flags);
    const progress = createProgress(`Hashing ${flags.dir}`, !this.jsonEnabled());
    try {
      const tree = await buildDirectoryTree(flags.dir, { instanceName: cas.instanceName, digestFunction: cas.digestFunction });
      const uploaded = new TransferMeter('Uploaded');
      const result = await cas.uploadBlobs(
        tree.files.map((f) => ({ digest: f.digest, path: f.absolutePath })),
        { onBlobUploaded: (d) => progress.update(uploaded.add(d.sizeBytes).text()) },
      );
      progress.succeed(`${uploaded.text()}; ${result.skippedBlobs} already present`);
      const blobs = tree.files.map((f) => ({ digest: f.digest.toString(), path: f.path }));
      for (const b of blobs) this.log(`${b.digest} ${b.path}`);
      return { blobs, uploadedBlobs: result.uploadedBlobs, uploadedBytes: result.uploadedBytes, skippedBlobs: result.skippedBlobs };
    } finally {
      progress.stop();
    }
  }
}

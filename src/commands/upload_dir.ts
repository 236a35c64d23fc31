import { Args, Flags } from '@oclif/core';
import { BzutilCommand } from '../lib/cli/base-command.js';
import { remoteFlags } from '../lib/cli/flags.js';
import { requireLocalDirectory } from '../lib/cli/local-input.js';
import { TransferMeter, createProgress, formatBytes } from '../lib/cli/progress.js';
import { uploadDirectory } from '../lib/client/upload-directory.js';
import { prose } from '../lib/cli/help-text.js';

export interface UploadDirResult {
  /** `<hash>/<size>` of the root Directory: pass it to upload_action --input_root. */
  digest: string;
  files: number;
  directories: number;
  uploadedBlobs: number;
  uploadedBytes: number;
  skippedBlobs: number;
}

export default class UploadDir extends BzutilCommand<UploadDirResult> {
  static override summary = 'Upload a directory as a Merkle tree and print the root Directory digest.';
  static override description = prose(`Hashes every file (streamed, so any size works), builds canonical REAPI Directory messages,
asks the CAS which blobs it lacks and uploads only those. Symlinks are stored as symlinks unless
--follow_symlinks is given; empty directories are kept.

Optional GLOB arguments (fast-glob syntax, relative to DIR) keep only matching files and the
directories that lead to them.`);
  static override examples = [
    { description: 'Upload an input root', command: '<%= config.bin %> <%= command.id %> ./inputs' },
    { description: 'Only C sources and headers', command: "<%= config.bin %> <%= command.id %> ./src '**/*.c' '**/*.h'" },
    { description: 'Against another server, machine-readable', command: '<%= config.bin %> <%= command.id %> --cas=grpc://cas.example:12100 ./inputs --json' },
  ];
  static override strict = false;
  static override args = {
    dir: Args.directory({ description: 'Directory to upload.', required: true }),
  };
  static override flags = {
    ...remoteFlags,
    follow_symlinks: Flags.boolean({ summary: 'Store what symlinks point to instead of the links.', aliases: ['follow-symlinks'], default: false }),
  };

  async run(): Promise<UploadDirResult> {
    const { args, argv, flags } = await this.parse(UploadDir);
    const globs = (argv as string[]).slice(1);
    await requireLocalDirectory(args.dir, 'the directory to upload');
    const cas = await this.connectCas(flags);
    const progress = createProgress(`Hashing ${args.dir}`, !this.jsonEnabled());
    const hashed = new TransferMeter('Hashed');
    const uploaded = new TransferMeter('Uploaded');
    try {
      const result = await uploadDirectory(cas, args.dir, {
        globs,
        followSymlinks: flags.follow_symlinks,
        onFileHashed: (f) => progress.update(hashed.add(f.digest.sizeBytes).text()),
        onBlobUploaded: (d) => progress.update(uploaded.add(d.sizeBytes).text()),
      });
      progress.succeed(`${result.tree.files.length} files; ${uploaded.text()}; ${result.skippedBlobs} already present (${formatBytes(result.tree.files.reduce((n, f) => n + f.digest.sizeBytes, 0))} in all)`);
      this.log(result.rootDigest.toString());
      return {
        digest: result.rootDigest.toString(),
        files: result.tree.files.length,
        directories: result.tree.directories.size,
        uploadedBlobs: result.uploadedBlobs,
        uploadedBytes: result.uploadedBytes,
        skippedBlobs: result.skippedBlobs,
      };
    } finally {
      progress.stop();
    }
  }
}

import { Flags } from '@oclif/core';
import { BzutilCommand } from '../lib/cli/base-command.js';
import { remoteFlags } from '../lib/cli/flags.js';

export interface FindMissingBlobsResult {
  /** The digests the CAS lacks, as `<hash>/<size>`, in the order given. */
  missing: string[];
  checked: number;
}

export default class FindMissingBlobs extends BzutilCommand<FindMissingBlobsResult> {
  static override summary = 'Print which of the given digests the CAS does not have.';
  static override description = 'Asks FindMissingBlobs (batched for long lists) and prints each missing digest on its own line; nothing when all are present.';
  static override examples = [
    { description: 'Check two blobs', command: '<%= config.bin %> <%= command.id %> --digests=<hash>/<size>,<hash>/<size>' },
    { description: 'As JSON', command: '<%= config.bin %> <%= command.id %> --digests=<hash>/<size> --json' },
  ];
  static override flags = {
    ...remoteFlags,
    digests: Flags.string({ summary: 'Digests <hash>/<size>, comma-separated or repeated.', required: true, multiple: true, delimiter: ',' }),
  };

  async run(): Promise<FindMissingBlobsResult> {
    const { flags } = await this.parse(FindMissingBlobs);
    const digests = flags.digests.map((d) => this.parseDigest(d, 'digest in --digests', flags));
    const cas = await this.connectCas(flags);
    const missing = (await cas.findMissingBlobs(digests)).map((d) => d.toString());
    for (const d of missing) this.log(d);
    return { missing, checked: digests.length };
  }
}

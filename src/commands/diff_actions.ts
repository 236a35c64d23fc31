import { Args } from '@oclif/core';
import { BzutilCommand } from '../lib/cli/base-command.js';
import { remoteFlags } from '../lib/cli/flags.js';
import { prose } from '../lib/cli/help-text.js';
import { type ActionDiff, diffActions, formatActionDiff } from '../lib/inspect/diff-actions.js';

/** The `--json` result: every differing field and input path, with both sides. */
export type DiffActionsResult = ActionDiff;

export default class DiffActions extends BzutilCommand<DiffActionsResult> {
  static override summary = 'Explain why two actions differ: argv, env, platform, action fields and input paths.';
  static override description = prose(`
Reads both Actions, their Commands and their input trees from the CAS and lists each difference,
left -> right: the argv, each environment variable, each platform property, the working directory,
the outputs, the timeout, do_not_cache and the salt, and every input path whose digest, kind,
executable bit or symlink target differs (with both digests). It answers "why was this a cache
miss?": find the two action digests (e.g. in Bazel's execution log) and compare them.

Subtrees with the same digest on both sides are not read, so a small change in a large tree is
cheap. The command exits 0 whether or not the actions differ; --json gives "identical": true|false.`);
  static override examples = [
    { description: 'Compare two actions', command: '<%= config.bin %> <%= command.id %> <hash>/<size> <hash>/<size>' },
    { description: 'As JSON, against another CAS', command: '<%= config.bin %> <%= command.id %> <hash>/<size> <hash>/<size> --cas=cas.example:12100 --json' },
  ];
  static override args = {
    left: Args.string({ description: 'Digest <hash>/<size> of the first Action.', required: true }),
    right: Args.string({ description: 'Digest <hash>/<size> of the second Action.', required: true }),
  };
  static override flags = { ...remoteFlags };

  async run(): Promise<DiffActionsResult> {
    const { args, flags } = await this.parse(DiffActions);
    const left = this.parseDigest(args.left, 'first action digest', flags);
    const right = this.parseDigest(args.right, 'second action digest', flags);
    const cas = await this.connectCas(flags);
    const diff = await diffActions(cas, left, right);
    this.log(formatActionDiff(diff).trimEnd());
    return diff;
  }
}

/**
 * Chooses and builds the worker's runner from its options: `bwrap` when Debian's bubblewrap is
 * installed (else `local`, with a loud warning), the uid actions run as, their limits and the
 * per-action cgroups. The one place that decides what an action may do on this host.
 */
import { StatusError } from '../errors/status-error.js';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { CgroupManager } from './action-cgroup.js';
import { BwrapRunner } from './bwrap-runner.js';
import { LocalRunner, type Runner } from './runner.js';
import { type ActionLimits, bwrapAvailable, DEFAULT_LIMITS, type RunAs } from './sandbox-command.js';

export type RunnerKind = 'local' | 'bwrap';

/** `nobody`/`nogroup` on Debian: a uid that owns nothing of the worker's. */
export const DEFAULT_RUN_AS: RunAs = { uid: 65534, gid: 65534 };

export interface CreateRunnerOptions {
  /** @default 'bwrap' when installed, else 'local' */
  kind?: RunnerKind;
  /** Host uid/gid of actions when the worker is root. @default DEFAULT_RUN_AS (bwrap), the worker's own (local) */
  runAs?: RunAs;
  /** Let actions run as root (inputs are then copied, never linked). @default false */
  allowRootActions?: boolean;
  limits?: Partial<ActionLimits>;
  /** bwrap: one persistent sandbox per runner slot rather than a bwrap per action. @default true */
  sandboxReuse?: boolean;
  logger: Logger;
  clock?: Clock;
}

export interface CreatedRunner {
  runner: Runner;
  kind: RunnerKind;
  /** Releases the cgroup parent (after every action has ended). */
  close(): Promise<void>;
}

export async function createRunner(opts: CreateRunnerOptions): Promise<CreatedRunner> {
  const installed = bwrapAvailable();
  const kind = opts.kind ?? (installed ? 'bwrap' : 'local');
  // Loud whether chosen or defaulted: a configuration resolves the default before it gets here.
  if (kind === 'local' && !installed) {
    opts.logger.warn(
      '!!! bubblewrap (/usr/bin/bwrap) is not installed: actions run UNSANDBOXED with the local runner. They can read everything the worker can and, as root, change anything. Install Debian\'s bubblewrap package. !!!',
    );
  } else if (kind === 'local') {
    opts.logger.warn('The local runner is chosen: actions run UNSANDBOXED (they can read everything the worker can).');
  }
  if (kind === 'bwrap' && !installed) {
    throw StatusError.failedPrecondition('Failed to start the bwrap runner: /usr/bin/bwrap, /usr/bin/setpriv or /usr/bin/prlimit is missing (install bubblewrap and util-linux)');
  }
  const isRoot = process.getuid?.() === 0;
  let runAs: RunAs | undefined;
  if (!isRoot) {
    if (opts.runAs) opts.logger.warn('Ignoring run_as: only a worker running as root can start actions as another uid');
  } else if (opts.allowRootActions) {
    runAs = undefined;
    opts.logger.warn('allow_root_actions: actions run as root; input files are copied rather than linked');
  } else {
    runAs = opts.runAs ?? (kind === 'bwrap' ? DEFAULT_RUN_AS : undefined);
    if (runAs?.uid === 0) throw StatusError.invalidArgument('Failed to start the runner: run_as is root; use allow_root_actions to mean it');
    if (!runAs) opts.logger.warn('!!! The local runner runs actions as root (no run_as given): they can read and change anything on this host. Input files are copied. !!!');
  }
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const cgroups = isRoot ? await CgroupManager.open() : undefined;
  if (!cgroups) opts.logger.warn('No per-action cgroup available: memory is limited per process (RLIMIT_AS) and the process limit is not enforced');
  const runnerOpts = { ...(runAs ? { runAs } : {}), limits, ...(cgroups ? { cgroups } : {}), ...(opts.clock ? { clock: opts.clock } : {}) };
  const runner = kind === 'bwrap' ? new BwrapRunner({ ...runnerOpts, sandboxReuse: opts.sandboxReuse ?? true }) : new LocalRunner(runnerOpts);
  const sandboxReuse = runner instanceof BwrapRunner && runner.reusesSandboxes;
  opts.logger.info('Runner ready', { runner: kind, runAs: runAs ?? 'worker uid', limits, cgroups: !!cgroups, ...(kind === 'bwrap' ? { sandboxReuse } : {}) });
  return {
    runner,
    kind,
    close: async () => {
      await runner.settled();
      if (runner instanceof BwrapRunner) await runner.closeSandboxes();
      runner.close();
      await cgroups?.close();
    },
  };
}

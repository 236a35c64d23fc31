/**
 * One cgroup per action, for the limits that rlimits cannot hold and for killing a whole process
 * tree. `RLIMIT_NPROC` counts every process of a uid (so it does not bind root, and actions sharing a
 * uid share it); `RLIMIT_AS` counts address space, not memory. The `pids` and `memory` controllers
 * count exactly the action's processes, and listing `cgroup.procs` finds every one of them even after
 * `setsid` or a double fork has taken them out of the process group.
 *
 * Both hierarchies are supported: v1 (separate `memory` and `pids` trees, what our machines have) and
 * v2 (one tree with `memory.max`, `pids.max` and `cgroup.kill`). Action cgroups are created below the
 * worker's own cgroup (so that the service manager's limits still apply), in `bzutil-<pid>`.
 * Where no cgroup can be created (not root, read-only /sys) `CgroupManager.open` returns undefined
 * and the runner falls back to rlimits and the process group.
 */
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';

const CGROUP_ROOT = '/sys/fs/cgroup';

export interface CgroupLimits {
  /** Bytes of memory (RSS + page cache) the action's processes may use together. */
  memoryBytes: number;
  /** Processes (and threads) the action may have at once. */
  processes: number;
}

/** What an action's cgroup saw: which limits were hit. */
export interface CgroupUsage {
  /** The memory limit was reached and the kernel killed a process for it. */
  memoryExceeded: boolean;
  /** A fork or clone failed because the process limit was reached. */
  processesExceeded: boolean;
}

/** Cumulative event counts of a cgroup (see ActionCgroup.counters). */
export interface CgroupCounters {
  oomKills: number;
  pidsMaxEvents: number;
}

/** Creates per-action cgroups under the worker's own. */
export class CgroupManager {
  private next = 1;

  private constructor(
    private readonly version: 1 | 2,
    /** v1: the worker's directories in the memory and pids trees; v2: one directory. */
    private readonly parents: readonly string[],
  ) {}

  /** The worker's own `cgroup.procs` files (where a helper returns after forking into an action's). */
  get homeProcsFiles(): string[] {
    return this.parents.map((p) => path.join(path.dirname(p), 'cgroup.procs'));
  }

  /** Finds the worker's cgroups and creates `bzutil-<pid>` below them; undefined when it cannot. */
  static async open(): Promise<CgroupManager | undefined> {
    let own: string;
    try {
      own = await fsp.readFile('/proc/self/cgroup', 'utf8');
    } catch {
      return undefined;
    }
    const lines = own.split('\n').filter(Boolean).map((l) => l.split(':'));
    const v1 = (controller: string) => {
      const line = lines.find((l) => l[1]?.split(',').includes(controller));
      return line ? path.join(CGROUP_ROOT, controller, line.slice(2).join(':')) : undefined;
    };
    const memory = v1('memory');
    const pids = v1('pids');
    const name = `bzutil-${process.pid}`;
    if (memory && pids) {
      const parents = [path.join(memory, name), path.join(pids, name)];
      if (await tryCreate(parents)) return new CgroupManager(1, parents);
      return undefined;
    }
    const unified = lines.find((l) => l[0] === '0' && l[1] === '');
    if (!unified) return undefined;
    const base = path.join(CGROUP_ROOT, unified.slice(2).join(':'));
    const controllers = await fsp.readFile(path.join(base, 'cgroup.controllers'), 'utf8').catch(() => '');
    if (!controllers.split(/\s+/).includes('memory') || !controllers.split(/\s+/).includes('pids')) return undefined;
    const parent = path.join(base, name);
    if (!(await tryCreate([parent]))) return undefined;
    // v2: a cgroup with processes cannot delegate controllers, and ours holds the worker; the
    // actions' parent is a fresh sibling level, so enabling there is allowed.
    try {
      await fsp.writeFile(path.join(parent, 'cgroup.subtree_control'), '+memory +pids');
    } catch {
      await fsp.rmdir(parent).catch(() => {});
      return undefined;
    }
    return new CgroupManager(2, [parent]);
  }

  /**
   * A new cgroup for one action (or one sandbox slot, named `prefix<n>`, which resets its limits per
   * action), with its limits set; nothing is in it yet.
   */
  async create(limits: CgroupLimits, prefix = 'a'): Promise<ActionCgroup> {
    const name = `${prefix}${this.next++}`;
    const dirs = this.parents.map((p) => path.join(p, name));
    await Promise.all(dirs.map((d) => fsp.mkdir(d)));
    const cgroup = new ActionCgroup(this.version, dirs);
    try {
      await cgroup.setLimits(limits);
    } catch (err) {
      await cgroup.destroy();
      throw err;
    }
    return cgroup;
  }

  /** Removes the parent directories (after every action cgroup is gone). */
  async close(): Promise<void> {
    for (const p of this.parents) await fsp.rmdir(p).catch(() => {});
  }
}

export class ActionCgroup {
  constructor(
    private readonly version: 1 | 2,
    private readonly dirs: readonly string[],
  ) {}

  /** The `cgroup.procs` files a process writes its pid to (as root, before dropping privileges) to join. */
  get procsFiles(): string[] {
    return this.dirs.map((d) => path.join(d, 'cgroup.procs'));
  }

  async setLimits(limits: CgroupLimits): Promise<void> {
    if (this.version === 2) {
      const [dir] = this.dirs as [string];
      await fsp.writeFile(path.join(dir, 'memory.max'), String(limits.memoryBytes));
      await fsp.writeFile(path.join(dir, 'memory.swap.max'), '0').catch(() => {});
      await fsp.writeFile(path.join(dir, 'pids.max'), String(limits.processes));
      return;
    }
    const [memory, pids] = this.dirs as [string, string];
    await fsp.writeFile(path.join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
    // Without swap accounting limits the action would swap instead of meeting its limit.
    await fsp.writeFile(path.join(memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)).catch(() => {});
    await fsp.writeFile(path.join(pids, 'pids.max'), String(limits.processes));
  }

  /**
   * Kills every process in the cgroup, repeating until it is empty: a process forking while it is
   * being killed adds a pid the next round finds. Bounded: the process limit caps each round, and
   * SIGKILL cannot be caught.
   */
  async killAll(): Promise<void> {
    if (this.version === 2) {
      await fsp.writeFile(path.join(this.dirs[0]!, 'cgroup.kill'), '1').catch(() => {});
    }
    const procs = this.procsFiles[this.procsFiles.length - 1]!;
    for (let round = 0; round < 200; round++) {
      const pids = await readPids(procs);
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // ESRCH: gone meanwhile.
        }
      }
      await new Promise((resolve) => setTimeout(resolve, round < 10 ? 2 : 20));
    }
  }

  /**
   * Which limits were hit since `since` (the counters before an action, for a cgroup that is reused
   * across actions; they only ever grow), else since the cgroup was made.
   */
  async usage(since?: CgroupCounters): Promise<CgroupUsage> {
    const now = await this.counters();
    return { memoryExceeded: now.oomKills > (since?.oomKills ?? 0), processesExceeded: now.pidsMaxEvents > (since?.pidsMaxEvents ?? 0) };
  }

  /** The kernel's cumulative counts of OOM kills and refused forks in this cgroup. */
  async counters(): Promise<CgroupCounters> {
    if (this.version === 2) {
      const [dir] = this.dirs as [string];
      const memoryEvents = await readKeyValues(path.join(dir, 'memory.events'));
      const pidsEvents = await readKeyValues(path.join(dir, 'pids.events'));
      return { oomKills: memoryEvents.get('oom_kill') ?? 0, pidsMaxEvents: pidsEvents.get('max') ?? 0 };
    }
    const [memory, pids] = this.dirs as [string, string];
    const oom = await readKeyValues(path.join(memory, 'memory.oom_control'));
    const pidsEvents = await readKeyValues(path.join(pids, 'pids.events'));
    return { oomKills: oom.get('oom_kill') ?? 0, pidsMaxEvents: pidsEvents.get('max') ?? 0 };
  }

  /** Kills what is left and removes the directories (retrying while the kernel reaps the last ones). */
  async destroy(): Promise<void> {
    await this.killAll();
    for (const dir of this.dirs) {
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          await fsp.rmdir(dir);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || attempt === 49) throw err;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    }
  }
}

/**
 * Removes `bzutil-<pid>` directories next to `parent` whose worker is gone (killed before it could
 * clean up): their action cgroups are empty once the processes are dead, and rmdir removes nothing else.
 */
async function removeStale(parent: string): Promise<void> {
  const base = path.dirname(parent);
  for (const name of await fsp.readdir(base).catch(() => [] as string[])) {
    const m = /^bzutil-(\d+)$/.exec(name);
    if (!m || Number(m[1]) === process.pid || isAlive(Number(m[1]))) continue;
    const dir = path.join(base, name);
    const children = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const c of children) if (c.isDirectory()) await fsp.rmdir(path.join(dir, c.name)).catch(() => {});
    await fsp.rmdir(dir).catch(() => {});
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function tryCreate(dirs: readonly string[]): Promise<boolean> {
  for (const d of dirs) await removeStale(d);
  const made: string[] = [];
  try {
    for (const d of dirs) {
      await fsp.mkdir(d, { recursive: true });
      made.push(d);
    }
    return true;
  } catch {
    for (const d of made) await fsp.rmdir(d).catch(() => {});
    return false;
  }
}

/**
 * Reads a cgroup file synchronously. These files are generated by the kernel on read (no disk, no
 * waiting): one read costs microseconds, while fs.promises.readFile makes four thread-pool round
 * trips (open, fstat, read, close), each a wake-up of another thread. They sit on every action's
 * path (the counters after it, the kill sweep), so the synchronous read is the cheaper one.
 */
function readCgroupFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

async function readPids(file: string): Promise<number[]> {
  const text = readCgroupFile(file);
  return text.split('\n').filter(Boolean).map(Number);
}

async function readKeyValues(file: string): Promise<Map<string, number>> {
  const text = readCgroupFile(file);
  const map = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined) map.set(key, Number(value));
  }
  return map;
}

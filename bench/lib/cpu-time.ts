/** CPU time of a process from /proc, for per-operation CPU figures of a server under a benchmark. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * CPU time (user + system) `pid` itself has used, in seconds, from /proc/<pid>/stat (its children,
 * the actions a worker runs, are not included); undefined when unavailable.
 */
export function readCpuSeconds(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / clockTicksPerSecond() : undefined;
}

let clockTicks: number | undefined;
function clockTicksPerSecond(): number {
  clockTicks ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  return clockTicks;
}

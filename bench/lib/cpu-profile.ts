/**
 * `--profile=DIR`: every process the benchmark starts runs with `node --cpu-prof`, its profile
 * written under DIR/<kind>/ when it exits (kind: `serve` for the bzutil servers, `driver-<job>` for
 * the client processes). At the end the top frames by self time of each profile are printed, so a
 * figure comes with evidence of where its time went.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

/** The subset of V8's .cpuprofile format read here. */
interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface FrameTime {
  frame: string;
  selfMs: number;
  share: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Sampled time not idle (the `(idle)` and `(program)` pseudo-frames left out). */
  busyMs: number;
  top: FrameTime[];
}

/** The node flags that make a process of `kind` write its CPU profile under `dir`. */
export function profileArgs(dir: string, kind: string): string[] {
  return ['--cpu-prof', `--cpu-prof-dir=${join(dir, kind.replace(/[^\w.-]/g, '_'))}`];
}

/** Self time per frame (function, file, line), largest first; `(idle)` is counted in the total only. */
export function summarizeProfile(profile: CpuProfile, topN: number, repoRoot: string): Omit<ProfileSummary, 'file'> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    const dt = profile.timeDeltas[i] ?? 0;
    totalUs += dt;
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)' || functionName === '(program)') {
      idleUs += dt;
      continue;
    }
    const where = url ? `${url.startsWith('file://') ? relative(repoRoot, url.slice('file://'.length)) : url}:${lineNumber + 1}` : '';
    const key = `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + dt);
  }
  const busyUs = totalUs - idleUs;
  const top = [...selfUs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([frame, us]) => ({ frame, selfMs: us / 1000, share: busyUs > 0 ? us / busyUs : 0 }));
  return { totalMs: totalUs / 1000, busyMs: busyUs / 1000, top };
}

/** Summaries of every .cpuprofile under `dir`, one per process. */
export async function summarizeProfiles(dir: string, topN: number, repoRoot: string): Promise<ProfileSummary[]> {
  const out: ProfileSummary[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.cpuprofile')) continue;
    const path = join(entry.parentPath, entry.name);
    const profile = JSON.parse(await readFile(path, 'utf8')) as CpuProfile;
    out.push({ file: relative(dir, path), ...summarizeProfile(profile, topN, repoRoot) });
  }
  return out.sort((a, b) => b.busyMs - a.busyMs);
}

/** A text report: per process, its busy time and the top frames with their share of it. */
export function formatProfileSummaries(summaries: readonly ProfileSummary[]): string {
  const lines: string[] = [];
  for (const s of summaries) {
    lines.push(`${s.file}: ${(s.busyMs / 1000).toFixed(2)} s busy of ${(s.totalMs / 1000).toFixed(2)} s sampled`);
    for (const f of s.top) lines.push(`  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.selfMs.toFixed(0).padStart(7)} ms  ${f.frame}`);
  }
  return `${lines.join('\n')}\n`;
}

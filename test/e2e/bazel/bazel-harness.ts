/**
 * Drives Debian's Bazel 4.2.3 (`bazel-bootstrap`) against bzutil in end-to-end tests: copies the
 * self-contained fixture workspace to a temp dir, runs builds with their own output bases (and shuts
 * those Bazel servers down afterwards), and collects the outputs so local and remote builds can be
 * compared byte for byte.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { repoRoot } from '../../helpers/serve-process.js';

export const fixtureDir = join(repoRoot, 'test/fixtures/bazel-workspace');

/** True when a `bazel` binary is on PATH. In CI its absence is a failure, not a skip. */
export function bazelAvailable(): boolean {
  const found = spawnSync('sh', ['-c', 'command -v bazel'], { encoding: 'utf8' }).status === 0;
  if (!found) {
    const msg = 'bazel is not installed: the Bazel end-to-end tier is SKIPPED (apt-get install -y bazel-bootstrap to run it)';
    if (process.env.CI) throw new Error(`${msg}; CI must run it`);
    process.stderr.write(`\n*** ${msg} ***\n\n`);
  }
  return found;
}

export interface Workspace {
  dir: string;
  root: string;
  outputBases: string[];
  /** Extra startup options of every Bazel server of this workspace (the same for `shutdown`). */
  startupOptions: string[];
  cleanup(): Promise<void>;
}

/** A fresh copy of the fixture workspace in a temp dir. */
export function copyWorkspace(label: string, opts: { startupOptions?: string[] } = {}): Workspace {
  const root = mkdtempSync(join(tmpdir(), `bzutil-bazel-${label}-`));
  const dir = join(root, 'ws');
  cpSync(fixtureDir, dir, { recursive: true, filter: (src) => !relative(fixtureDir, src).startsWith('bazel-') });
  const ws: Workspace = {
    dir,
    root,
    outputBases: [],
    startupOptions: opts.startupOptions ?? [],
    cleanup: async () => {
      for (const ob of ws.outputBases) await runBazel(ws, ob, ['shutdown']).catch(() => undefined);
      // Bazel leaves read-only trees behind; make them writable before removing.
      spawnSync('chmod', ['-R', 'u+w', root]);
      rmSync(root, { recursive: true, force: true });
    },
  };
  return ws;
}

export interface BazelResult {
  code: number;
  output: string;
}

/**
 * Common flags: quiet logs, and no convenience symlinks in the workspace (several output bases
 * share one workspace, and another base's bazel-<name> link would be read as part of //...).
 */
export const COMMON_FLAGS = ['--symlink_prefix=/', '--nosandbox_debug', '--color=no', '--curses=no', '--show_progress_rate_limit=30', '--noshow_loading_progress'];

/** Runs `bazel --output_base=<ob> <args>` in the workspace; resolves with the exit code and output. */
export function runBazel(ws: Workspace, outputBase: string, args: string[], timeoutMs = 600_000): Promise<BazelResult> {
  if (!ws.outputBases.includes(outputBase)) ws.outputBases.push(outputBase);
  const startup = [`--output_base=${outputBase}`, '--max_idle_secs=120', ...ws.startupOptions];
  return new Promise((resolve, reject) => {
    const child = spawn('bazel', [...startup, ...args], { cwd: ws.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bazel ${args.join(' ')} timed out.\n${output.slice(-5000)}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      // BZUTIL_BAZEL_LOG_DIR keeps every invocation's output for debugging.
      const logDir = process.env.BZUTIL_BAZEL_LOG_DIR;
      if (logDir) {
        mkdirSync(logDir, { recursive: true });
        writeFileSync(join(logDir, `${Date.now()}-${args[0]}.log`), `bazel ${[...startup, ...args].join(' ')}\n${output}`);
      }
      resolve({ code: code ?? -1, output });
    });
  });
}

/** Outputs of `//...` that must be byte-identical between a local and a remote build. */
export const COMPARED_OUTPUTS = [
  'app/fib',
  'app/fib_table.txt',
  'gen/greeting.txt',
  'gen/hello.sh',
  'gen/combined.txt',
  'lib/libmath.a',
  'lib/libstrings.a',
  'lib/math_test',
  'tree/dir',
  'tree/digest.txt',
];

/**
 * Maps each compared output (files inside tree artifacts included) to its sha256, executable bit and,
 * for symlinks, target — read from the output base's bazel-bin. A build of fewer targets than
 * `//...` names the outputs it compares.
 */
export async function collectOutputs(ws: Workspace, outputBase: string, outputs: readonly string[] = COMPARED_OUTPUTS): Promise<Record<string, string>> {
  const info = await runBazel(ws, outputBase, ['info', 'bazel-bin']);
  if (info.code !== 0) throw new Error(`bazel info bazel-bin failed:\n${info.output}`);
  const bin = info.output.trim().split('\n').at(-1)!.trim();
  const out: Record<string, string> = {};
  const visit = (rel: string, isRoot: boolean) => {
    const p = join(bin, rel);
    const st = lstatSync(p);
    if (st.isSymbolicLink()) out[rel] = `symlink:${readlinkSync(p)}`;
    else if (st.isDirectory()) {
      const names = readdirSync(p).sort();
      // Bazel 4.2.3 drops empty subdirectories of tree artifacts whenever it downloads them from any
      // cache, its own --disk_cache included (bazelbuild/bazel#15789), so they cannot be compared.
      if (names.length === 0 && !isRoot) return;
      out[rel + '/'] = 'dir';
      for (const name of names) visit(`${rel}/${name}`, false);
    } else {
      const exec = (st.mode & 0o100) !== 0 ? 'x' : '-';
      out[rel] = `${exec}:${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  for (const rel of outputs) {
    if (!existsSync(join(bin, rel))) throw new Error(`Expected output ${rel} is missing from ${bin}`);
    visit(rel, true);
  }
  return out;
}

/** Parses Bazel's "INFO: N processes: 3 remote cache hit, 2 internal, 5 remote." summary. */
export function processSummary(output: string): Record<string, number> {
  const lines = [...output.matchAll(/INFO: (\d+) process(?:es)?(?:: (.*))?\./g)];
  const last = lines.at(-1);
  if (!last) throw new Error(`No process summary in Bazel output:\n${output.slice(-3000)}`);
  const counts: Record<string, number> = { total: Number(last[1]) };
  for (const part of (last[2] ?? '').split(',')) {
    const m = /^\s*(\d+) (.+?)\s*$/.exec(part);
    if (m) counts[m[2]!] = Number(m[1]);
  }
  return counts;
}

/**
 * Debian's Bazel 4.2.3 embeds a netty built without JDK ALPN support, so `grpcs://` fails before
 * connecting ("JDK provider does not support ALPN protocol") unless netty-tcnative's OpenSSL engine
 * loads. Debian ships that library as `libnetty-tcnative-jni` (the same 2.0.28 as the classes inside
 * Bazel) under a name netty does not look for (`libnetty-tcnative.so`), and the library checks its
 * own file name when loaded, so a symlink is not enough: it is copied into `dir` as
 * `libnetty_tcnative.so` and the returned startup option puts `dir` on Bazel's java.library.path.
 * Returns undefined (loudly) when the package is absent outside CI; in CI its absence fails.
 */
export function tcnativeStartupOptions(dir: string): string[] | undefined {
  const candidates = ['/usr/lib/x86_64-linux-gnu/jni', '/usr/lib/aarch64-linux-gnu/jni', '/usr/lib/jni'].map((d) => join(d, 'libnetty-tcnative.so'));
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    const msg = 'libnetty-tcnative-jni is not installed: Bazel 4.2.3 from Debian cannot speak TLS without it, so the Bazel TLS tests are SKIPPED (apt-get install -y libnetty-tcnative-jni to run them)';
    if (process.env.CI) throw new Error(`${msg}; CI must run them`);
    process.stderr.write(`\n*** ${msg} ***\n\n`);
    return undefined;
  }
  mkdirSync(dir, { recursive: true });
  copyFileSync(found, join(dir, 'libnetty_tcnative.so'));
  return [`--host_jvm_args=-Djava.library.path=${dir}`];
}

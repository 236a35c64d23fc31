/**
 * Chroot mode, as BuildStream 2 (through buildbox-casd) and other BuildGrid-style clients expect it:
 * the input root is a whole sysroot (here a static busybox as /bin/sh), the command names absolute
 * paths inside it and writes to an absolute path, and an output may name the input root itself.
 * Needs root, bubblewrap and Debian's busybox-static (CI installs both; elsewhere the suite skips
 * loudly).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import type { ExecutionTask } from '../../../src/lib/worker/build-executor.js';
import { createRunner, type CreatedRunner, DEFAULT_RUN_AS } from '../../../src/lib/worker/create-runner.js';
import { FileCache } from '../../../src/lib/worker/file-cache.js';
import { LocalBuildExecutor } from '../../../src/lib/worker/local-build-executor.js';
import { bwrapAvailable } from '../../../src/lib/worker/sandbox-command.js';
import { blobText, newMemoryStore, putBlob, putDirectory } from '../../unit/worker/worker-test-helpers.js';

const BUSYBOX = '/bin/busybox';
const ready = process.getuid?.() === 0 && bwrapAvailable() && existsSync(BUSYBOX);
if (process.env.CI && !ready) throw new Error('chroot-mode: CI must run as root with bubblewrap and busybox-static installed');
if (!ready) console.warn('!!! chroot-mode: SKIPPING (needs root, /usr/bin/bwrap and busybox-static) !!!');

describe.skipIf(!ready)('bwrap runner, chroot mode', () => {
  const store = newMemoryStore();
  let workDir: string;
  let created: CreatedRunner;
  let executor: LocalBuildExecutor;

  beforeAll(async () => {
    workDir = mkdtempSync(path.join(tmpdir(), 'bzutil-chroot-'));
    const fileCache = await FileCache.open({ directory: path.join(workDir, 'cache'), contentAddressableStorage: store, maxSizeBytes: 1 << 26 });
    created = await createRunner({ kind: 'bwrap', logger: silentLogger });
    executor = new LocalBuildExecutor({ contentAddressableStorage: store, runner: created.runner, workDir, workerName: 'chroot', fileCache });
  });
  afterAll(async () => {
    await executor?.settled();
    await created?.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  /** A sysroot: /bin/busybox (static) and /bin/sh -> busybox. */
  const sysroot = async (): Promise<Digest> => {
    const busybox = await putBlob(store, readFileSync(BUSYBOX));
    const bin = await putDirectory(store, { files: [{ name: 'busybox', digest: busybox.toProto(), isExecutable: true }], symlinks: [{ name: 'sh', target: 'busybox' }] });
    return putDirectory(store, { directories: [{ name: 'bin', digest: bin.toProto() }] });
  };

  it.each([
    ['a platform asking for chroot=true', 'buildstream-install'],
    ['an output path naming the input root itself', ''],
  ])('runs a sysroot-style action for %s and collects its outputs', async (_label, outputPath) => {
    const action: reapi.IAction = {
      inputRootDigest: (await sysroot()).toProto(),
      platform: { properties: [{ name: 'ISA', value: 'x86-64' }, { name: 'OSFamily', value: 'linux' }, { name: 'chroot', value: 'true' }] },
    };
    const task: ExecutionTask = {
      taskId: `chroot-${outputPath || 'root'}`,
      actionDigest: Digest.ofBytes(reapi.Action.encode(action).finish()),
      action,
      command: {
        arguments: ['/bin/sh', '-c', '/bin/busybox mkdir -p /buildstream-install && echo built > /buildstream-install/hello && /bin/busybox id -u && /bin/busybox ls /'],
        environmentVariables: [{ name: 'PATH', value: '/bin' }],
        outputPaths: [outputPath],
      },
      timeoutMs: 20_000,
    };

    const response = await executor.execute(task);

    expect(response.status).toBeUndefined();
    const stderr = response.result?.stderrDigest ? await blobText(store, response.result.stderrDigest) : '';
    expect({ exitCode: response.result?.exitCode ?? 0, stderr }).toEqual({ exitCode: 0, stderr: '' });
    const stdout = (await blobText(store, response.result?.stdoutDigest)).split('\n');
    expect(stdout[0]).toBe(String(DEFAULT_RUN_AS.uid));
    // Only the sysroot (and the mount points of /dev, /proc, /tmp) is visible as `/`.
    expect(stdout.slice(1).filter(Boolean).sort()).toEqual(['bin', 'buildstream-install', 'dev', 'proc', 'tmp']);
    const [dir] = response.result?.outputDirectories ?? [];
    expect(dir?.path).toBe(outputPath);
    const tree = reapi.Tree.decode(await store.get(Digest.fromProto('', reapi.DigestFunction.Value.SHA256, dir!.treeDigest!, 'tree')));
    const names = (d: reapi.IDirectory) => [...(d.files ?? []), ...(d.directories ?? []), ...(d.symlinks ?? [])].map((e) => e.name);
    // The mount points bwrap needed inside the sysroot are not outputs.
    if (outputPath === '') expect(names(tree.root!).sort()).toEqual(['bin', 'buildstream-install']);
    else expect(names(tree.root!)).toEqual(['hello']);
  });
});

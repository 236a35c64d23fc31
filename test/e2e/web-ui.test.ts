/**
 * The web UI in a real browser (playwright-core driving Debian's chromium): run an action on an
 * in-process `serve all`, open the dashboard, follow links to the operation, the action, its
 * command and an input file, and check what each page shows. Screenshots go to test-artifacts/ui/.
 * Without chromium the test skips loudly, except in CI (.ci/run installs it), where it fails.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeWithDigest } from '../../src/lib/digest/encode-with-digest.js';
import { type longrunning, reapi } from '../../src/lib/proto/index.js';
import { executionService } from '../../src/lib/proto/services.js';
import type { HttpServer } from '../../src/server/http/http-server.js';
import type { ServeAll } from '../../src/server/serve-all.js';
import { startServeAllInProcess } from '../helpers/serve-all-in-process.js';
import { putTree } from '../unit/worker/worker-test-helpers.js';
import { repoRoot } from '../helpers/serve-process.js';

const CHROMIUM = process.env.BZUTIL_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  if (process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run installs chromium for the browser test`);
  console.warn(`\n*** SKIPPING the web UI browser test: ${CHROMIUM} is missing (apt-get install chromium) ***\n`);
}
const shots = join(repoRoot, 'test-artifacts/ui');
const ExecutionClient = grpc.makeGenericClientConstructor(executionService, 'Execution');

describe.skipIf(!haveChromium)('web UI in chromium', () => {
  let work: string;
  let all: ServeAll;
  let http: HttpServer;
  let stop: (() => Promise<void>) | undefined;
  let browser: BrowserContext;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'bzutil-ui-'));
    mkdirSync(shots, { recursive: true });
    ({ all, http, close: stop } = await startServeAllInProcess(work));
    // A fresh profile directory per run (playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(join(work, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 60_000,
    });
  }, 90_000);
  afterAll(async () => {
    await browser?.close();
    await stop?.();
    rmSync(work, { recursive: true, force: true });
  });

  it('follows links from the dashboard to the operation, its command and an input file', async () => {
    const cas = all.apiserver.contentAddressableStorage;
    const inputRoot = await putTree(cas, { src: { 'in.txt': 'hello <from> the input tree' } });
    const command = encodeWithDigest(reapi.Command, { arguments: ['sh', '-c', 'cat src/in.txt'], environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }] });
    const action = encodeWithDigest(reapi.Action, { commandDigest: command.digest.toProto(), inputRootDigest: inputRoot.toProto() });
    await cas.put(command.digest, command.bytes);
    await cas.put(action.digest, action.bytes);
    const client = new ExecutionClient(all.scheduler.address, grpc.credentials.createInsecure());
    let operationName = '';
    for await (const op of (client as unknown as { execute(r: reapi.IExecuteRequest): AsyncIterable<longrunning.Operation> }).execute({ actionDigest: action.digest.toProto() })) {
      operationName = op.name;
    }
    client.close();

    const page = await browser.newPage();
    await page.goto(`http://${http.address}/`);
    expect(await page.locator('h1').textContent()).toBe('Dashboard');
    await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });
    const row = page.locator('tr', { has: page.locator(`a:text-is("${operationName}")`) });
    expect(await row.locator('td').nth(2).textContent()).toBe('COMPLETED');
    expect(await row.locator('td').nth(3).textContent()).toBe('exit 0');

    await row.locator(`a:text-is("${operationName}")`).click();
    expect(await page.locator('h1').textContent()).toBe('Operation');
    expect(await page.locator('tr:has(th:text-is("stage")) td').textContent()).toBe('COMPLETED');
    expect(await page.locator('tr:has(th:text-is("exit code")) td').textContent()).toBe('0');
    expect(await page.locator('tr:has(td:text-is("execute"))').count()).toBe(1);
    // The output section's script reads /logs: the final stdout of a finished action.
    await page.locator('#stdout[data-done="true"]').waitFor({ timeout: 10_000 });
    expect(await page.locator('#stdout').textContent()).toBe('hello <from> the input tree');
    await page.screenshot({ path: join(shots, 'operation.png'), fullPage: true });
    await page.locator('tr:has(th:text-is("stdout")) a').click();
    expect(await page.locator('#content').textContent()).toBe('hello <from> the input tree');
    await page.goBack();

    await page.locator(`a:text-is("${action.digest.toString()}")`).click();
    expect(await page.locator('h1').textContent()).toBe('Action');
    await page.locator('tr:has(th:text-is("command")) a').click();
    expect(await page.locator('#argv').textContent()).toBe('sh\n-c\ncat src/in.txt');
    expect(await page.locator('#env').textContent()).toBe('PATH=/usr/bin:/bin');
    await page.screenshot({ path: join(shots, 'command.png'), fullPage: true });
    await page.goBack();

    await page.locator('tr:has(th:text-is("input root")) a').click();
    await page.locator('a:text-is("src/")').click();
    await page.locator('a:text-is("in.txt")').click();
    expect(await page.locator('h1').textContent()).toBe('Blob');
    expect(await page.locator('#content').textContent()).toBe('hello <from> the input tree');
    await page.screenshot({ path: join(shots, 'input-file.png'), fullPage: true });

    await page.goto(`http://${http.address}/ac?digest=${action.digest.hash}/${action.digest.sizeBytes}`);
    expect(await page.locator('main').textContent()).toContain(`Hit for ${action.digest.toString()}`);
    await page.goto(`http://${http.address}/blob/${'0'.repeat(64)}/5`);
    expect(await page.locator('main').textContent()).toContain('NOT_FOUND');
    await page.close();
  }, 120_000);
});

/**
 * The web UI (server-rendered HTML; one small script fills the live output of logs.ts): a dashboard of the queue, the workers and recent
 * operations; an operation page with its stage, timeline and result; Action, Command, input tree
 * (Directory) and blob pages; and an action cache lookup. Every page reads the same stores and queue
 * the gRPC services use, so what it shows is what Bazel gets. With auth on, http-auth.ts has checked
 * the caller's credential before a page renders; the dashboard shows only the instances it may use.
 */
import type { ActionCache } from '../../../lib/actioncache/action-cache.js';
import type { BlobStore } from '../../../lib/blobstore/blob-store.js';
import { Digest } from '../../../lib/digest/digest.js';
import { Code, StatusError, toStatusError } from '../../../lib/errors/status-error.js';
import { reapi } from '../../../lib/proto/index.js';
import type { BuildQueue } from '../../../lib/scheduler/build-queue.js';
import type { OperationSnapshot } from '../../../lib/scheduler/operation-snapshot.js';
import type { WorkerSummary } from '../../observability/action-observer.js';
import type { LogStreamReader } from '../../services/log-stream-reader.js';
import { logsResponse, logsSection } from './logs.js';
import { digestLink, fields, type Html, html, operationLink, page, table } from './html.js';

export interface UiSources {
  contentAddressableStorage: BlobStore;
  actionCache?: ActionCache;
  buildQueue?: BuildQueue;
  workers?: () => WorkerSummary[];
  /** Live log streams (the scheduler's ByteStream reader); without it operation pages show no output section. */
  readLogStream?: LogStreamReader;
}

export interface UiResponse {
  status: number;
  contentType: string;
  body: string | Uint8Array;
  headers?: Record<string, string>;
  /** Writes the body as it is produced (then `body` is ignored); resolves when done. */
  stream?: (out: NodeJS.WritableStream) => Promise<void>;
}

/** What the caller may see (http-auth.ts); without auth, everything. */
export interface UiAccess {
  mayUseInstance(instanceName: string): boolean;
}

/** Blobs up to this size are shown inline as text (larger ones: download only). */
const MAX_INLINE_BYTES = 1024 * 1024;
const RECENT_OPERATIONS = 50;

/** The page at `url`, or undefined when no UI page lives there. */
export async function renderUi(url: URL, sources: UiSources, access: UiAccess = { mayUseInstance: () => true }): Promise<UiResponse | undefined> {
  const parts = url.pathname.split('/').filter(Boolean);
  const instanceName = url.searchParams.get('instance') ?? '';
  const digestAt = () => parseDigest(`${parts[1] ?? ''}/${parts[2] ?? ''}`, instanceName);
  try {
    if (parts.length === 0) return ok(page('Dashboard', await dashboard(sources, access)));
    if (parts[0] === 'operation' && parts.length === 1) return ok(page('Operation', await operation(sources, url.searchParams.get('name') ?? '')));
    if (parts[0] === 'logs' && parts.length === 1) return await logsResponse(url, sources.readLogStream, async (name) => sources.buildQueue?.getOperation(name));
    if (parts[0] === 'ac' && parts.length === 1) return ok(page('Action cache', await actionCacheLookup(sources, url.searchParams.get('digest'), instanceName)));
    if (parts.length !== 3) return undefined;
    switch (parts[0]) {
      case 'action':
        return ok(page('Action', await action(sources, digestAt())));
      case 'command':
        return ok(page('Command', command(await decode(sources, reapi.Command, digestAt()))));
      case 'directory':
        return ok(page('Input directory', directory(await decode(sources, reapi.Directory, digestAt()), instanceName)));
      case 'blob':
        return await blob(sources, digestAt(), url.searchParams.has('download'));
      default:
        return undefined;
    }
  } catch (err) {
    const s = toStatusError(err);
    const status = s.code === Code.NOT_FOUND ? 404 : s.code === Code.INVALID_ARGUMENT ? 400 : 500;
    return { status, contentType: 'text/html; charset=utf-8', body: page('Error', html`<p class="fail">${s.codeName}: ${s.message}</p>`) };
  }
}

function ok(body: string): UiResponse {
  return { status: 200, contentType: 'text/html; charset=utf-8', body };
}

function parseDigest(text: string, instanceName: string): Digest {
  return Digest.parse(text, { instanceName });
}

async function decode<T>(sources: UiSources, type: { decode(b: Uint8Array): T }, digest: Digest): Promise<T> {
  return type.decode(await sources.contentAddressableStorage.get(digest, { maxBytes: 16 * 1024 * 1024 }));
}

async function dashboard(sources: UiSources, access: UiAccess): Promise<Html> {
  if (!sources.buildQueue) return html`<p class="muted">No scheduler runs in this process: see the <a href="/ac">action cache</a>.</p>`;
  const all: OperationSnapshot[] = [];
  let pageToken = '';
  do {
    const page = await sources.buildQueue.listOperations({ allInstances: true, pageSize: 1000, pageToken });
    all.push(...page.operations.filter((op) => access.mayUseInstance(op.actionDigest.instanceName)));
    pageToken = page.nextPageToken;
  } while (pageToken && all.length < 100_000);
  const byStage = new Map<string, number>();
  for (const op of all) byStage.set(`${op.actionDigest.instanceName}\u0000${op.stage}`, (byStage.get(`${op.actionDigest.instanceName}\u0000${op.stage}`) ?? 0) + 1);
  const queue = [...byStage].filter(([k]) => !k.endsWith('COMPLETED')).map(([k, n]) => [k.split('\u0000')[0] || '(default)', k.split('\u0000')[1]!, n]);
  const workers = (sources.workers?.() ?? []).map((w) => ({ ...w, running: w.running.filter((t) => access.mayUseInstance(t.instance)) }));
  const recent = all.slice(-RECENT_OPERATIONS).reverse();
  return html`<h2>Queue</h2>${table(['instance', 'stage', 'operations'], queue, 'Nothing queued or executing.')}
<h2>Workers</h2>${table(
    ['worker', 'busy / slots', 'running'],
    workers.map((w) => [w.name, `${w.running.length}/${w.slots}`, w.running.map((t) => html`${operationLink(t.operation)} <code>${t.actionDigest}</code><br>`)]),
    'No live worker.',
  )}
<h2>Recent operations</h2>${table(
    ['operation', 'action', 'stage', 'outcome'],
    recent.map((op) => [operationLink(op.name), digestLink('action', op.actionDigest), op.stage, outcome(op.response)]),
    'No operation yet.',
  )}`;
}

function outcome(response: reapi.IExecuteResponse | undefined): Html | string {
  if (!response) return '';
  if (response.status?.code) return html`<span class="fail">${Code[response.status.code] ?? response.status.code}: ${response.status.message ?? ''}</span>`;
  const exit = response.result?.exitCode ?? 0;
  return html`<span class="${exit === 0 ? 'ok' : 'fail'}">exit ${exit}</span>${response.cachedResult ? ' (cached)' : ''}`;
}

async function operation(sources: UiSources, name: string): Promise<Html> {
  if (!sources.buildQueue) throw StatusError.notFound('No scheduler runs in this process');
  const op = await sources.buildQueue.getOperation(name);
  return html`${fields([
    ['name', op.name],
    ['action', digestLink('action', op.actionDigest)],
    ['stage', op.stage],
    ['outcome', outcome(op.response)],
  ])}${sources.readLogStream && op.stage !== 'CACHE_CHECK' ? logsSection(op.logStreamOperation ?? op.name, op.stage !== 'COMPLETED') : ''}${
    op.response?.result ? actionResult(op.response.result, op.actionDigest.instanceName) : ''
  }`;
}

const STEPS: [string, keyof reapi.IExecutedActionMetadata, keyof reapi.IExecutedActionMetadata][] = [
  ['queued', 'queuedTimestamp', 'workerStartTimestamp'],
  ['fetch inputs', 'inputFetchStartTimestamp', 'inputFetchCompletedTimestamp'],
  ['execute', 'executionStartTimestamp', 'executionCompletedTimestamp'],
  ['upload outputs', 'outputUploadStartTimestamp', 'outputUploadCompletedTimestamp'],
];

function millis(t: unknown): number | undefined {
  const ts = t as { seconds?: number | { toNumber(): number }; nanos?: number } | null | undefined;
  if (!ts || ts.seconds === undefined) return undefined;
  return Number(ts.seconds) * 1000 + (ts.nanos ?? 0) / 1e6;
}

/** The ActionResult with links: exit code, streams, outputs, and the worker's timeline. */
function actionResult(result: reapi.IActionResult, instanceName: string): Html {
  const d = (proto: reapi.IDigest | null | undefined) => (proto?.hash ? Digest.fromProto(instanceName, undefined, proto) : undefined);
  const meta = result.executionMetadata ?? {};
  const spans = STEPS.map(([label, from, to]) => [label, millis(meta[from]), millis(meta[to])] as const).filter(([, a, b]) => a !== undefined && b !== undefined);
  const longest = Math.max(1, ...spans.map(([, a, b]) => b! - a!));
  const stdout = d(result.stdoutDigest);
  const stderr = d(result.stderrDigest);
  return html`<h2>Result</h2>${fields([
    ['exit code', result.exitCode ?? 0],
    ['worker', meta.worker || undefined],
    ['stdout', stdout ? digestLink('blob', stdout) : undefined],
    ['stderr', stderr ? digestLink('blob', stderr) : undefined],
  ])}<h3>Timeline</h3>${table(
    ['step', 'ms', ''],
    spans.map(([label, a, b]) => [label, (b! - a!).toFixed(1), html`<span class="bar" style="${`width:${Math.max(1, Math.round(((b! - a!) / longest) * 300))}px`}"></span>`]),
    'No timing reported.',
  )}<h3>Outputs</h3>${table(
    ['path', 'digest'],
    [
      ...(result.outputFiles ?? []).map((f) => [f.path ?? '', d(f.digest) ? digestLink('blob', d(f.digest)!) : '']),
      ...(result.outputDirectories ?? []).map((o) => [`${o.path ?? ''}/`, d(o.treeDigest) ? digestLink('blob', d(o.treeDigest)!, `tree ${d(o.treeDigest)!.toString()}`) : '']),
    ],
    'No outputs.',
  )}`;
}

async function action(sources: UiSources, digest: Digest): Promise<Html> {
  const a = await decode(sources, reapi.Action, digest);
  const at = (proto: reapi.IDigest | null | undefined) => (proto?.hash ? Digest.fromProto(digest.instanceName, undefined, proto) : undefined);
  const commandDigest = at(a.commandDigest);
  const inputRoot = at(a.inputRootDigest);
  return fields([
    ['digest', digest.toString()],
    ['command', commandDigest ? digestLink('command', commandDigest) : undefined],
    ['input root', inputRoot ? digestLink('directory', inputRoot) : undefined],
    ['timeout', a.timeout ? `${Number(a.timeout.seconds ?? 0)}s` : undefined],
    ['do not cache', a.doNotCache ? 'yes' : 'no'],
    ['platform', (a.platform?.properties ?? []).map((p) => html`<code>${p.name}=${p.value}</code><br>`)],
    ['action cache', html`<a href="${`/ac?digest=${digest.hash}/${digest.sizeBytes}${digest.instanceName ? `&instance=${encodeURIComponent(digest.instanceName)}` : ''}`}">look up</a>`],
  ]);
}

function command(c: reapi.Command): Html {
  return html`${fields([
    ['arguments', html`<pre id="argv">${(c.arguments ?? []).join('\n')}</pre>`],
    ['working directory', c.workingDirectory || '(input root)'],
    ['environment', html`<pre id="env">${(c.environmentVariables ?? []).map((e) => `${e.name}=${e.value}`).join('\n')}</pre>`],
    ['platform', (c.platform?.properties ?? []).map((p) => html`<code>${p.name}=${p.value}</code><br>`)],
    ['output paths', (c.outputPaths?.length ? c.outputPaths : [...(c.outputFiles ?? []), ...(c.outputDirectories ?? [])]).map((p) => html`<code>${p}</code><br>`)],
  ])}`;
}

function directory(dir: reapi.Directory, instanceName: string): Html {
  const d = (proto: reapi.IDigest | null | undefined) => Digest.fromProto(instanceName, undefined, proto);
  return table(
    ['name', 'kind', 'digest'],
    [
      ...(dir.directories ?? []).map((e) => [digestLink('directory', d(e.digest), `${e.name}/`), 'directory', d(e.digest).toString()]),
      ...(dir.files ?? []).map((f) => [digestLink('blob', d(f.digest), f.name ?? ''), f.isExecutable ? 'executable file' : 'file', d(f.digest).toString()]),
      ...(dir.symlinks ?? []).map((l) => [l.name ?? '', html`symlink to <code>${l.target}</code>`, '']),
    ],
    'Empty directory.',
  );
}

async function blob(sources: UiSources, digest: Digest, download: boolean): Promise<UiResponse> {
  if (download || digest.sizeBytes > MAX_INLINE_BYTES) {
    if (!download) return ok(page('Blob', html`${fields([['digest', digest.toString()]])}<p><a href="?download">Download</a> (too large to show)</p>`));
    const data = await sources.contentAddressableStorage.get(digest, { maxBytes: 256 * 1024 * 1024 });
    return { status: 200, contentType: 'application/octet-stream', body: data, headers: { 'content-disposition': `attachment; filename="${digest.hash}"` } };
  }
  const data = await sources.contentAddressableStorage.get(digest);
  const text = Buffer.from(data).toString('utf8');
  const binary = text.includes('\uFFFD') || text.includes('\u0000');
  return ok(page('Blob', html`${fields([['digest', digest.toString()]])}<p><a href="?download">Download</a></p>${binary ? html`<p class="muted">Binary content.</p>` : html`<pre id="content">${text}</pre>`}`));
}

async function actionCacheLookup(sources: UiSources, digestText: string | null, instanceName: string): Promise<Html> {
  const form = html`<form action="/ac"><input name="digest" size="80" placeholder="action digest hash/size" value="${digestText ?? ''}"> <input name="instance" placeholder="instance" value="${instanceName}"> <button>Look up</button></form>`;
  if (!digestText) return form;
  if (!sources.actionCache) return html`${form}<p class="muted">No action cache in this process.</p>`;
  const digest = parseDigest(digestText, instanceName);
  try {
    const result = await sources.actionCache.getActionResult(digest);
    return html`${form}<p>Hit for ${digestLink('action', digest)}.</p>${actionResult(result, instanceName)}`;
  } catch (err) {
    if (toStatusError(err).code !== Code.NOT_FOUND) throw err;
    return html`${form}<p class="muted">No result cached for ${digest.toString()}.</p>`;
  }
}

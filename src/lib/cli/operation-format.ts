/**
 * How the execution-side commands (`execute`, `get_operation`, `wait_execution`, `cancel_operation`,
 * `list_operations`) show an Operation: one plain view type that is both the `--json` result and the
 * source of the human layout, so the two can never disagree. The human layout is the seed's
 * (`Operation: <name>` / `Done:` / `Metadata:` / `ExecResponse:`), indented one tab per level,
 * with the ExecutedActionMetadata timestamps turned into the durations a user actually wants to read
 * (queue latency, input fetch, execution, output upload).
 */
import { type DecodedOperation } from '../client/execution-client.js';
import { Code, StatusError } from '../errors/status-error.js';
import { type longrunning, type protobuf, reapi, rpc } from '../proto/index.js';
import { timestampToMs } from '../proto/proto-time.js';

export { timestampToMs };

/** A google.rpc.Status for people and scripts. */
export interface StatusView {
  code: number;
  /** The code's name, e.g. `OK`, `CANCELLED`, `FAILED_PRECONDITION`. */
  codeName: string;
  message: string;
  /** `blobs/<hash>/<size>` subjects of PreconditionFailure MISSING violations: what to upload. */
  missingBlobs?: string[];
}

/** ExecutedActionMetadata: the worker, durations in milliseconds, and the raw timestamps (ISO 8601). */
export interface ExecutionMetadataView {
  worker: string;
  /** worker_start - queued: how long the action waited for a worker. */
  queueLatencyMs?: number;
  /** worker_completed - worker_start. */
  workerTotalMs?: number;
  inputFetchMs?: number;
  executionMs?: number;
  outputUploadMs?: number;
  queuedTimestamp?: string;
  workerStartTimestamp?: string;
  workerCompletedTimestamp?: string;
  inputFetchStartTimestamp?: string;
  inputFetchCompletedTimestamp?: string;
  executionStartTimestamp?: string;
  executionCompletedTimestamp?: string;
  outputUploadStartTimestamp?: string;
  outputUploadCompletedTimestamp?: string;
}

export interface OutputFileView {
  path: string;
  /** `<hash>/<size>`. */
  digest: string;
  isExecutable: boolean;
}

export interface OutputDirectoryView {
  path: string;
  /** `<hash>/<size>` of the Tree message. */
  treeDigest: string;
}

export interface OutputSymlinkView {
  path: string;
  target: string;
}

export interface ActionResultView {
  exitCode: number;
  outputFiles: OutputFileView[];
  outputDirectories: OutputDirectoryView[];
  /** output_symlinks plus the older output_file_symlinks and output_directory_symlinks, one per path. */
  outputSymlinks: OutputSymlinkView[];
  /** `<hash>/<size>`; the empty blob's digest when the action printed nothing to it (absent from servers that leave it unset). */
  stdoutDigest?: string;
  stderrDigest?: string;
  executionMetadata?: ExecutionMetadataView;
}

export interface ExecuteResponseView {
  /** Whether the execution could be carried out; a failing action has OK here and a non-zero exitCode. */
  status: StatusView;
  /** True when the result came from the action cache instead of a run. */
  cachedResult: boolean;
  /** The server's note to the user, if any. */
  message?: string;
  /** Absent when the execution failed before producing a result (e.g. missing inputs). */
  result?: ActionResultView;
}

/** An Operation as the CLI shows it; the `--json` result of the execution-side commands. */
export interface OperationView {
  /** Pass it to `get_operation --name`, `wait_execution --name`, `cancel_operation --name`. */
  name: string;
  done: boolean;
  /** CACHE_CHECK, QUEUED, EXECUTING or COMPLETED (UNKNOWN when the server sent no metadata). */
  stage: string;
  /** `<hash>/<size>` of the Action, from the operation's metadata. */
  actionDigest?: string;
  /** Operation.error: the server could not carry the operation at all. */
  error?: StatusView;
  /** Present once done (unless `error` is set). */
  response?: ExecuteResponseView;
}

const PRECONDITION_FAILURE_TYPE = 'type.googleapis.com/google.rpc.PreconditionFailure';

/**
 * Converts a google.rpc.Status (or StatusError) into its view, listing MISSING blobs separately. An
 * absent Status, or one without a code, is OK: proto3 does not send default values.
 */
export function toStatusView(status: rpc.IStatus | StatusError | null | undefined): StatusView {
  const s = status instanceof StatusError ? status : StatusError.fromProto({ ...status, code: status?.code ?? Code.OK });
  const view: StatusView = { code: s.code, codeName: s.codeName, message: s.message };
  const missing = missingBlobSubjects(s);
  if (missing.length > 0) view.missingBlobs = missing;
  return view;
}

/** The `blobs/<hash>/<size>` subjects of every PreconditionFailure MISSING violation in `err`. */
export function missingBlobSubjects(err: StatusError): string[] {
  if (!err.details.some((d) => d.typeUrl === PRECONDITION_FAILURE_TYPE)) return [];
  return err
    .preconditionViolations()
    .filter((v) => v.type === 'MISSING')
    .map((v) => v.subject ?? '')
    .filter(Boolean);
}

/** `<hash>/<size>` of a proto Digest, or undefined when absent. */
export function formatProtoDigest(d: reapi.IDigest | null | undefined): string | undefined {
  if (!d || !d.hash) return undefined;
  return `${d.hash}/${Number(d.sizeBytes ?? 0)}`;
}

function isoOf(t: protobuf.ITimestamp | null | undefined): string | undefined {
  const ms = timestampToMs(t);
  return ms === undefined ? undefined : new Date(Math.floor(ms)).toISOString();
}

/** end - start in milliseconds (microsecond precision), when both are set and in order. */
function spanMs(start: protobuf.ITimestamp | null | undefined, end: protobuf.ITimestamp | null | undefined): number | undefined {
  const a = timestampToMs(start);
  const b = timestampToMs(end);
  if (a === undefined || b === undefined || b < a) return undefined;
  return Math.round((b - a) * 1000) / 1000;
}

/** The durations and timestamps of ExecutedActionMetadata. */
export function toExecutionMetadataView(m: reapi.IExecutedActionMetadata): ExecutionMetadataView {
  const view: ExecutionMetadataView = { worker: m.worker ?? '' };
  const set = <K extends keyof ExecutionMetadataView>(key: K, value: ExecutionMetadataView[K] | undefined) => {
    if (value !== undefined) view[key] = value;
  };
  set('queueLatencyMs', spanMs(m.queuedTimestamp, m.workerStartTimestamp));
  set('workerTotalMs', spanMs(m.workerStartTimestamp, m.workerCompletedTimestamp));
  set('inputFetchMs', spanMs(m.inputFetchStartTimestamp, m.inputFetchCompletedTimestamp));
  set('executionMs', spanMs(m.executionStartTimestamp, m.executionCompletedTimestamp));
  set('outputUploadMs', spanMs(m.outputUploadStartTimestamp, m.outputUploadCompletedTimestamp));
  set('queuedTimestamp', isoOf(m.queuedTimestamp));
  set('workerStartTimestamp', isoOf(m.workerStartTimestamp));
  set('workerCompletedTimestamp', isoOf(m.workerCompletedTimestamp));
  set('inputFetchStartTimestamp', isoOf(m.inputFetchStartTimestamp));
  set('inputFetchCompletedTimestamp', isoOf(m.inputFetchCompletedTimestamp));
  set('executionStartTimestamp', isoOf(m.executionStartTimestamp));
  set('executionCompletedTimestamp', isoOf(m.executionCompletedTimestamp));
  set('outputUploadStartTimestamp', isoOf(m.outputUploadStartTimestamp));
  set('outputUploadCompletedTimestamp', isoOf(m.outputUploadCompletedTimestamp));
  return view;
}

/** The view of an ActionResult: outputs sorted by path, symlink fields merged. */
export function toActionResultView(r: reapi.IActionResult): ActionResultView {
  const byPath = (a: { path: string }, b: { path: string }) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  const symlinks = new Map<string, OutputSymlinkView>();
  for (const s of [...(r.outputSymlinks ?? []), ...(r.outputFileSymlinks ?? []), ...(r.outputDirectorySymlinks ?? [])]) {
    if (!symlinks.has(s.path ?? '')) symlinks.set(s.path ?? '', { path: s.path ?? '', target: s.target ?? '' });
  }
  const view: ActionResultView = {
    exitCode: r.exitCode ?? 0,
    outputFiles: (r.outputFiles ?? [])
      .map((f) => ({ path: f.path ?? '', digest: formatProtoDigest(f.digest) ?? '', isExecutable: f.isExecutable ?? false }))
      .sort(byPath),
    outputDirectories: (r.outputDirectories ?? []).map((d) => ({ path: d.path ?? '', treeDigest: formatProtoDigest(d.treeDigest) ?? '' })).sort(byPath),
    outputSymlinks: [...symlinks.values()].sort(byPath),
  };
  const stdout = formatProtoDigest(r.stdoutDigest);
  if (stdout) view.stdoutDigest = stdout;
  const stderr = formatProtoDigest(r.stderrDigest);
  if (stderr) view.stderrDigest = stderr;
  if (r.executionMetadata) view.executionMetadata = toExecutionMetadataView(r.executionMetadata);
  return view;
}

export function toExecuteResponseView(response: reapi.IExecuteResponse): ExecuteResponseView {
  const view: ExecuteResponseView = { status: toStatusView(response.status), cachedResult: response.cachedResult ?? false };
  if (response.message) view.message = response.message;
  if (response.result) view.result = toActionResultView(response.result);
  return view;
}

/** The view of a decoded Operation (see `decodeOperation`). */
export function toOperationView(op: DecodedOperation): OperationView {
  const view: OperationView = { name: op.name, done: op.done, stage: op.stage };
  const actionDigest = formatProtoDigest(op.metadata?.actionDigest);
  if (actionDigest) view.actionDigest = actionDigest;
  if (op.error) view.error = toStatusView(op.error);
  if (op.response) view.response = toExecuteResponseView(op.response);
  return view;
}

/** Whole milliseconds, as the seed prints them (`420ms`); `--json` keeps the fractions. */
export function formatMs(ms: number): string {
  return `${Math.round(ms)}ms`;
}

/** One level of indentation: a tab, as the seed (Scoot's bzutil) prints it. */
const TAB = '\t';

function statusLines(s: StatusView, indent: string): string[] {
  const lines = [`${indent}Code: ${s.codeName}`];
  if (s.message) lines.push(`${indent}Message: ${s.message}`);
  if (s.missingBlobs?.length) lines.push(`${indent}MissingBlobs:`, ...s.missingBlobs.map((b) => `${indent}${TAB}${b}`));
  return lines;
}

/**
 * The seed's human layout of an Operation, field for field and one tab per level, ending with a
 * newline. Fields the seed always prints (OutputFiles, OutputDirectories, the stream digests) are
 * printed even when empty:
 *
 * ```
 * Operation: operations/1f0e...
 * \tDone: true
 * \tMetadata:
 * \t\tStage: COMPLETED
 * \t\tActionDigest: <hash>/<size>
 * \tExecResponse:
 * \t\tStatus:
 * \t\t\tCode: OK
 * \t\tCached: false
 * \t\tActionResult:
 * \t\t\tExitCode: 0
 * \t\t\tOutputFiles: []
 * ...
 * ```
 */
export function formatOperation(view: OperationView): string {
  const t1 = TAB;
  const t2 = TAB.repeat(2);
  const lines = [`Operation: ${view.name}`, `${t1}Done: ${view.done}`, `${t1}Metadata:`, `${t2}Stage: ${view.stage}`];
  if (view.actionDigest) lines.push(`${t2}ActionDigest: ${view.actionDigest}`);
  if (view.error) lines.push(`${t1}Error:`, ...statusLines(view.error, t2));
  const response = view.response;
  if (response) {
    lines.push(`${t1}ExecResponse:`, `${t2}Status:`, ...statusLines(response.status, TAB.repeat(3)), `${t2}Cached: ${response.cachedResult}`);
    if (response.message) lines.push(`${t2}Message: ${response.message}`);
    if (response.result) lines.push(`${t2}ActionResult:`, ...actionResultLines(response.result, TAB.repeat(3)));
  }
  return lines.join('\n') + '\n';
}

/** `Label: []` when empty, else `Label:` and one indented line per entry. */
function listLines(label: string, entries: string[], indent: string): string[] {
  return entries.length === 0 ? [`${indent}${label}: []`] : [`${indent}${label}:`, ...entries.map((e) => `${indent}${TAB}${e}`)];
}

function actionResultLines(r: ActionResultView, indent: string): string[] {
  const lines = [`${indent}ExitCode: ${r.exitCode}`];
  const inner = indent + TAB;
  lines.push(...listLines('OutputFiles', r.outputFiles.map((f) => `${f.path} ${f.digest}${f.isExecutable ? ' [x]' : ''}`), indent));
  lines.push(...listLines('OutputDirectories', r.outputDirectories.map((d) => `${d.path} tree=${d.treeDigest}`), indent));
  if (r.outputSymlinks.length) lines.push(...listLines('OutputSymlinks', r.outputSymlinks.map((s) => `${s.path} -> ${s.target}`), indent));
  if (r.stdoutDigest) lines.push(`${indent}StdoutDigest: ${r.stdoutDigest}`);
  if (r.stderrDigest) lines.push(`${indent}StderrDigest: ${r.stderrDigest}`);
  const m = r.executionMetadata;
  if (m) {
    lines.push(`${indent}ExecutionMetadata:`);
    if (m.worker) lines.push(`${inner}Worker: ${m.worker}`);
    const durations: [string, number | undefined][] = [
      ['QueueLatency', m.queueLatencyMs],
      ['WorkerTotal', m.workerTotalMs],
      ['InputFetch', m.inputFetchMs],
      ['Execution', m.executionMs],
      ['OutputUpload', m.outputUploadMs],
    ];
    for (const [label, ms] of durations) if (ms !== undefined) lines.push(`${inner}${label}: ${formatMs(ms)}`);
  }
  return lines;
}

/** A short summary for a spinner: `EXECUTING operations/...`. */
export function formatStage(view: OperationView): string {
  return `${view.stage} ${view.name}`;
}

/**
 * Operations as a table for a terminal (header, aligned columns) or, for pipes, one tab-separated
 * line per operation (name, stage, done, action digest) that `cut` and `awk` can take apart.
 */
export function formatOperationTable(views: readonly OperationView[], opts: { terminal: boolean }): string {
  const rows = views.map((v) => [v.name, v.stage, String(v.done), v.actionDigest ?? '']);
  if (!opts.terminal) return rows.map((r) => r.join('\t') + '\n').join('');
  if (rows.length === 0) return 'No operations.\n';
  const header = ['NAME', 'STAGE', 'DONE', 'ACTION DIGEST'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n';
  return [header, ...rows].map(line).join('');
}

/** protobufjs toObject options for `--json_full`: numbers for int64, enum names, bytes in base64. */
const TO_OBJECT_OPTIONS = { longs: Number, enums: String, bytes: String, defaults: false, arrays: false } as const;

const KNOWN_DETAIL_TYPES: Record<string, { decode(b: Uint8Array): object; toObject(m: never, o: object): Record<string, unknown> }> = {
  'google.rpc.PreconditionFailure': rpc.PreconditionFailure as never,
  'google.rpc.BadRequest': rpc.BadRequest as never,
  'google.rpc.RetryInfo': rpc.RetryInfo as never,
  'google.rpc.DebugInfo': rpc.DebugInfo as never,
  'google.rpc.ResourceInfo': rpc.ResourceInfo as never,
  'google.rpc.Help': rpc.Help as never,
  'google.rpc.LocalizedMessage': rpc.LocalizedMessage as never,
  'google.rpc.QuotaFailure': rpc.QuotaFailure as never,
  'build.bazel.remote.execution.v2.ExecuteOperationMetadata': reapi.ExecuteOperationMetadata as never,
  'build.bazel.remote.execution.v2.ExecuteResponse': reapi.ExecuteResponse as never,
};

/**
 * An Any as protobuf JSON does it: `{"@type": url, ...fields}` for types we know, recursively (so the
 * Status inside an ExecuteResponse shows its decoded PreconditionFailure), else `{"@type", value}`
 * with the bytes in base64.
 */
function anyToObject(any: protobuf.IAny): Record<string, unknown> {
  const typeUrl = any.type_url ?? '';
  const value = any.value ?? new Uint8Array();
  const cls = KNOWN_DETAIL_TYPES[typeUrl.slice(typeUrl.lastIndexOf('/') + 1)];
  if (!cls) return { '@type': typeUrl, value: Buffer.from(value).toString('base64') };
  const message = cls.decode(value);
  return { '@type': typeUrl, ...expandAnys(cls.toObject(message as never, TO_OBJECT_OPTIONS), message) };
}

/** Replaces the `details` of a toObject'ed google.rpc.Status (nested anywhere) with decoded Anys. */
function expandAnys(obj: Record<string, unknown>, message: unknown): Record<string, unknown> {
  const msg = message as { status?: rpc.IStatus; details?: protobuf.IAny[] } | null;
  const out: Record<string, unknown> = { ...obj };
  if (msg?.status && typeof out.status === 'object' && out.status !== null) {
    out.status = expandAnys(out.status as Record<string, unknown>, msg.status);
  }
  if (Array.isArray(msg?.details) && msg.details.length > 0) out.details = msg.details.map(anyToObject);
  return out;
}

/**
 * The whole Operation for `get_operation --json_full`: protobufjs `toObject` (int64 as numbers,
 * enums as names, bytes as base64) with the metadata, response and error details unpacked.
 */
export function toFullOperationJson(op: longrunning.IOperation): Record<string, unknown> {
  const out: Record<string, unknown> = { name: op.name ?? '', done: op.done ?? false };
  if (op.metadata) out.metadata = anyToObject(op.metadata);
  if (op.response) out.response = anyToObject(op.response);
  if (op.error) {
    const status = rpc.Status.toObject(rpc.Status.decode(rpc.Status.encode(op.error).finish()), TO_OBJECT_OPTIONS);
    out.error = expandAnys(status, op.error);
  }
  return out;
}

/** True when `view` is a done operation whose execution failed for lack of inputs in the CAS. */
export function isMissingInputs(view: OperationView): boolean {
  const s = view.response?.status;
  return s !== undefined && s.code === Code.FAILED_PRECONDITION && (s.missingBlobs?.length ?? 0) > 0;
}

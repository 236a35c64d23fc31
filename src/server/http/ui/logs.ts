/**
 * The web UI's live logs: `/logs?name=<operation>&stream=stdout|stderr` streams a log stream as
 * text/plain while the action runs (the scheduler's ByteStream reader: live tail, then the final
 * streams once done), and the operation page's section that shows both, filled by a few lines of
 * script reading `/logs` with fetch (the browser's cookie carries the token when auth is on).
 * Without script the section links to the plain-text streams.
 */
import { logStreamName } from '../../../lib/scheduler/log-streams.js';
import { parseOperationName } from '../../../lib/scheduler/operation-names.js';
import type { LogStreamReader } from '../../services/log-stream-reader.js';
import { Html, html } from './html.js';

export interface LogsResponse {
  status: number;
  contentType: string;
  body: string;
  stream?: (out: NodeJS.WritableStream) => Promise<void>;
}

/**
 * The streaming response of `/logs`. `exists` answers NOT_FOUND (thrown, the caller makes it a 404)
 * for an unknown operation before any header is sent.
 */
export async function logsResponse(url: URL, read: LogStreamReader | undefined, exists: (name: string) => Promise<unknown>): Promise<LogsResponse> {
  const operation = parseOperationName(url.searchParams.get('name'));
  const kind = url.searchParams.get('stream') === 'stderr' ? 'stderr' : 'stdout';
  if (!read) return { status: 404, contentType: 'text/plain; charset=utf-8', body: 'No scheduler runs in this process\n' };
  await exists(operation.name);
  return {
    status: 200,
    contentType: 'text/plain; charset=utf-8',
    body: '',
    stream: async (out) => {
      const abort = new AbortController();
      out.once('close', () => abort.abort());
      try {
        for await (const data of read(logStreamName(operation.name, kind), { offset: 0, limit: 0, signal: abort.signal })!) {
          if (!out.write(data)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
        }
      } catch {
        // The browser went away (cancelled) or the stream broke: end the response.
      } finally {
        out.end();
      }
    },
  };
}

const SCRIPT = `for (const pre of document.querySelectorAll('pre[data-logs]')) {
  fetch(pre.dataset.logs, { credentials: 'same-origin' }).then(async (res) => {
    if (!res.ok || !res.body) { pre.textContent = '(' + res.status + ')'; return; }
    const reader = res.body.getReader(); const text = new TextDecoder(); pre.textContent = '';
    for (;;) { const { done, value } = await reader.read(); if (done) break; pre.textContent += text.decode(value, { stream: true }); pre.scrollTop = pre.scrollHeight; }
    pre.dataset.done = 'true';
  }).catch(() => { pre.textContent += '\\n(disconnected)'; });
}`;

/** The operation page's stdout/stderr section: live while the action runs, its final streams after. */
export function logsSection(operationName: string, running: boolean): Html {
  const href = (kind: string) => `/logs?name=${encodeURIComponent(operationName)}&stream=${kind}`;
  return html`<h2>${running ? 'Live output' : 'Output'}</h2>
<h3>stdout <a href="${href('stdout')}">raw</a></h3><pre id="stdout" data-logs="${href('stdout')}">${running ? '(waiting for output)' : ''}</pre>
<h3>stderr <a href="${href('stderr')}">raw</a></h3><pre id="stderr" data-logs="${href('stderr')}"></pre>
<script>${new Html(SCRIPT)}</script>`;
}

/**
 * The web UI's HTML: a tagged template that escapes every interpolated value (so a file name or an
 * argv entry can never inject markup), the page layout, and links to the UI's own pages.
 */
import type { Digest } from '../../../lib/digest/digest.js';

/** Markup that is already safe (made by `html` or these helpers). */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

type Value = Html | string | number | boolean | null | undefined | readonly Value[];

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function render(value: Value): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(String(value));
}

/** `html\`<p>${userText}</p>\``: values are escaped unless they are Html. */
export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  return new Html(strings.reduce((out, s, i) => out + s + (i < values.length ? render(values[i]!) : ''), ''));
}

const STYLE = `body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330}
header{background:#1d2330;color:#fff;padding:8px 16px}header a{color:#fff;margin-right:16px;text-decoration:none}
main{padding:8px 16px}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d5d9e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f7}code,pre{font:13px ui-monospace,monospace}pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:60vh}
.bar{display:inline-block;height:10px;background:#4b7bec;vertical-align:middle}.ok{color:#1a7f37}.fail{color:#c62828}.muted{color:#6b7280}`;

export function page(title: string, body: Html): string {
  return `<!doctype html>\n${html`<html lang="en"><head><meta charset="utf-8"><title>${title} · bzutil</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>${new Html(STYLE)}</style></head>
<body><header><a href="/"><b>bzutil</b></a><a href="/">Dashboard</a><a href="/ac">Action cache</a><a href="/metrics">Metrics</a></header>
<main><h1>${title}</h1>${body}</main></body></html>`.text}`;
}

/** `?instance=…` when the digest has an instance name. */
function instanceQuery(digest: Digest): string {
  return digest.instanceName ? `?instance=${encodeURIComponent(digest.instanceName)}` : '';
}

/** A link to the page of `kind` for `digest`, labelled with the digest (or `label`). */
export function digestLink(kind: 'action' | 'command' | 'directory' | 'blob', digest: Digest, label?: string): Html {
  return html`<a href="${`/${kind}/${digest.hash}/${digest.sizeBytes}${instanceQuery(digest)}`}">${label ?? digest.toString()}</a>`;
}

export function operationLink(name: string): Html {
  return html`<a href="${`/operation?name=${encodeURIComponent(name)}`}">${name}</a>`;
}

/** A two-column table of label and value rows; rows with an undefined value are left out. */
export function fields(rows: readonly [string, Value][]): Html {
  return html`<table>${rows.filter(([, v]) => v !== undefined).map(([k, v]) => html`<tr><th>${k}</th><td>${v}</td></tr>`)}</table>`;
}

export function table(headings: readonly string[], rows: readonly (readonly Value[])[], empty = 'None'): Html {
  if (rows.length === 0) return html`<p class="muted">${empty}</p>`;
  return html`<table><tr>${headings.map((h) => html`<th>${h}</th>`)}</tr>${rows.map((r) => html`<tr>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}</table>`;
}

// Small helpers shared by the pages: building DOM (text only, never HTML strings, so
// nothing a device reports can run as code), reading the JSON API, formatting values.

/** An element: h('td', {class: 'x', dataset: {device: 'pi-1'}}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  const svg = tag.startsWith('svg:');
  const el = svg
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An API error with the hub's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET `path` as JSON; with `missingOk`, a 404 gives null. */
export async function getJSON(path, missingOk = false) {
  const res = await fetch(path, { headers: { Accept: 'application/json' } });
  if (res.status === 404 && missingOk) return null;
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try {
      msg = (await res.json()).error || msg;
    } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, `${path}: ${msg}`);
  }
  return res.json();
}

export const enc = encodeURIComponent;
export const deviceHref = (name) => `#/devices/${enc(name)}`;
export const deploymentHref = (name) => `#/deployments/${enc(name)}`;

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${UNITS[i]}`;
}

export function percent(p) {
  return p === null || p === undefined ? '–' : `${p >= 10 ? Math.round(p) : p.toFixed(1)} %`;
}

export function celsius(t) {
  return t === null || t === undefined ? '–' : `${t.toFixed(1)} °C`;
}

/** `42s`, `5m`, `3h 5m`, `2d 4h`. */
export function duration(s) {
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/**
 * When the hub last heard from device `d` (a /v1/devices row) in Unix ms: the later of
 * its status (every 30 s) and its latest telemetry sample `t` (often more frequent), if any.
 */
export function lastSeen(d, t) {
  return Math.max(d.last_seen_ms || 0, t?.received_ms || 0);
}

/** `5s ago` for a Unix ms time; `never` for 0. */
export function ago(ms) {
  return ms ? `${duration((Date.now() - ms) / 1000)} ago` : 'never';
}

export function clock(ms) {
  return new Date(ms).toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' });
}

/** A coloured label: kind is ok, warn, bad or idle. */
export function pill(text, kind) {
  return h('span', { class: `pill ${kind}` }, text);
}

/** How a device is doing, for its pill: [text, kind]. */
export function deviceHealth(d) {
  if (!d.online) return [d.last_seen_ms ? 'offline' : 'never seen', 'idle'];
  if (d.ready < d.total) return ['degraded', 'warn'];
  if (!d.in_sync) return ['syncing', 'warn'];
  return ['healthy', 'ok'];
}

export function labels(map) {
  return Object.entries(map || {}).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`));
}

/** A table: `cols` are header texts, `rows` arrays of cells (or <tr> elements). */
export function table(cls, cols, rows, empty = 'none') {
  const body = rows.length
    ? rows.map((r) => (r instanceof Node ? r : h('tr', null, r.map((c) => h('td', null, c)))))
    : [h('tr', null, h('td', { colspan: cols.length, class: 'muted' }, empty))];
  return h('table', { class: cls }, h('thead', null, h('tr', null, cols.map((c) => h('th', null, c)))),
    h('tbody', null, body));
}

/** A definition list of [label, value] pairs, each pair in a grid cell. */
export function facts(pairs) {
  return h('dl', { class: 'facts' },
    pairs.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', { dataset: { fact: k } }, v))));
}

export function events(list) {
  const rows = (list || []).slice(-30).reverse()
    .map((e) => [h('span', { class: 'muted nowrap' }, clock(e.ts_ms)), e.reason, e.message]);
  return table('events', ['time', 'reason', 'message'], rows, 'no events');
}

/** A page's whole content when what it shows does not exist: `message`, the hub's own
 * words (`detail`) in small print, and a link back to the fleet. */
export function missing(message, detail) {
  return h('div', { class: 'missing', dataset: { missing: '1' } },
    h('p', { class: 'error-text' }, message),
    detail ? h('p', { class: 'muted small' }, detail) : '',
    h('p', null, h('a', { href: '#/', class: 'back' }, '← back to the fleet')));
}

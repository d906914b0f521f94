// The device page's log viewer: one container's output, as `drover-hub logs` shows it,
// from GET /v1/devices/D/logs/W?container=C&tail=N&since=S&follow=B (a streamed
// text/plain body, read chunk by chunk). Container output is untrusted: it is only ever
// added as text nodes, never parsed as HTML. A follow runs until Stop, another Show, or
// the page is left (`stop()`), each of which aborts the request; the hub then cancels the
// stream on the device.

import { h, enc } from './util.js';

const DEFAULT_TAIL = 200;
/** Text kept on the page; older output is dropped from the top beyond this. */
const MAX_CHARS = 2 * 1024 * 1024;
/** Starts the line the hub ends a failed body with (FAILURE_MARK in commands/http.rs). */
const FAILURE_MARK = '\n--- drover-hub: ';

export function logViewer(device) {
  let run = null; // { ctrl: AbortController } of the request being read
  let known = []; // [{ name, containers: [names] }]
  let knownKey = '';
  const workload = h('select', { name: 'workload', onchange: () => fillContainers() });
  const container = h('select', { name: 'container' });
  const tail = h('input', { type: 'number', name: 'tail', min: 0, value: DEFAULT_TAIL, class: 'num' });
  const since = h('input', { type: 'text', name: 'since', placeholder: 'e.g. 10m', size: 7 });
  const follow = h('input', { type: 'checkbox', name: 'follow' });
  const show = h('button', { type: 'button', class: 'show', onclick: () => start() }, 'Show');
  const stopBtn = h('button', { type: 'button', class: 'stop', disabled: true, onclick: () => stop('stopped') }, 'Stop');
  const status = h('span', { class: 'log-status muted small' });
  const out = h('pre', { class: 'log', dataset: { state: 'idle' } });
  const field = (label, el) => h('label', null, label, ' ', el);
  const root = h('section', { class: 'logs' },
    h('div', { class: 'log-controls' },
      field('workload', workload), field('container', container), field('last', tail), 'lines',
      field('since', since), h('label', null, follow, ' follow'), show, stopBtn, status),
    out);

  function fillContainers() {
    const w = known.find((x) => x.name === workload.value);
    const names = w ? w.containers : [];
    const keep = container.value;
    container.replaceChildren(...names.map((c) => h('option', { value: c }, c)));
    if (names.includes(keep)) container.value = keep;
    // One container needs no choosing.
    container.parentElement.hidden = names.length <= 1;
  }

  /** The workloads and containers to choose from (the page calls this on each refresh). */
  function setWorkloads(list) {
    // Unchanged lists leave the selects alone (an open drop-down stays open).
    const key = JSON.stringify(list);
    if (key === knownKey) return;
    [known, knownKey] = [list, key];
    const keep = workload.value;
    workload.replaceChildren(...list.map((w) => h('option', { value: w.name }, w.name)));
    if (list.some((w) => w.name === keep)) workload.value = keep;
    fillContainers();
    show.disabled = !list.length;
  }

  /** Shows the log of `w`/`c` with the current settings (a Logs button in a workload). */
  function open(w, c) {
    workload.value = w;
    fillContainers();
    if (c) container.value = c;
    start();
    root.scrollIntoView({ block: 'nearest' });
  }

  function say(state, text) {
    out.dataset.state = state;
    status.textContent = text;
    status.className = `log-status small ${state === 'error' ? 'error-text' : 'muted'}`;
    stopBtn.disabled = state !== 'loading' && state !== 'streaming';
  }

  function stop(why) {
    if (!run) return;
    run.ctrl.abort();
    run = null;
    say('stopped', why);
  }

  function url() {
    const q = new URLSearchParams({ follow: String(follow.checked) });
    if (container.value) q.set('container', container.value);
    const n = tail.value.trim();
    if (n !== '') q.set('tail', n);
    if (since.value.trim()) q.set('since', since.value.trim());
    return `/v1/devices/${enc(device)}/logs/${enc(workload.value)}?${q}`;
  }

  async function start() {
    stop('stopped');
    if (!workload.value) return;
    const mine = { ctrl: new AbortController() };
    run = mine;
    out.replaceChildren();
    const what = `${workload.value}/${container.value}`;
    say('loading', `asking ${device} for ${what}…`);
    try {
      const res = await fetch(url(), { signal: mine.ctrl.signal });
      if (!res.ok) throw new Error(await errorText(res));
      say('streaming', follow.checked ? `following ${what}` : `reading ${what}…`);
      const lines = await copy(res.body.getReader(), mine);
      const got = lines === 1 ? '1 line' : `${lines} lines`;
      if (run === mine) say('done', `${what}: ${got}, ${follow.checked ? 'the stream ended' : 'end of log'}`);
    } catch (e) {
      if (run !== mine) return; // stopped or replaced: not an error
      const broke = e.name === 'TypeError' && out.firstChild;
      say('error', broke ? (hubReason() || `the log stream broke off: ${e.message}`) : e.message);
    } finally {
      if (run === mine) run = null;
    }
  }

  /** Appends the body as it arrives; the number of lines read. */
  async function copy(reader, mine) {
    const text = new TextDecoder();
    let [chars, lines] = [0, 0];
    for (;;) {
      const { done, value } = await reader.read();
      if (run !== mine) return lines;
      const chunk = done ? text.decode() : text.decode(value, { stream: true });
      if (chunk) {
        chars = append(chunk, chars);
        lines += chunk.split('\n').length - 1;
      }
      if (done) return lines;
    }
  }

  /** The hub's reason for breaking the body off: its last line, when it starts with
   * FAILURE_MARK (e.g. `device r12a went offline…`); null otherwise. */
  function hubReason() {
    const text = out.textContent.slice(-8192);
    const i = text.lastIndexOf(FAILURE_MARK);
    if (i < 0) return null;
    const line = text.slice(i + FAILURE_MARK.length).replace(/\n$/, '');
    return line && !line.includes('\n') ? line : null;
  }

  /** Adds `chunk` as text, keeps the end in view if it was, drops old text past the cap. */
  function append(chunk, chars) {
    const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    out.append(document.createTextNode(chunk));
    chars += chunk.length;
    while (chars > MAX_CHARS && out.firstChild) {
      chars -= out.firstChild.textContent.length;
      out.firstChild.remove();
    }
    if (atEnd) out.scrollTop = out.scrollHeight;
    return chars;
  }

  return { root, setWorkloads, open, stop: () => stop('stopped: left the page') };
}

/** The hub's `{"error"}` message, or the status line. */
async function errorText(res) {
  const fallback = `${res.status} ${res.statusText}`;
  try {
    return (await res.json()).error || fallback;
  } catch (_) {
    return fallback;
  }
}

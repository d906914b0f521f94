// The dashboard's shell: hash routes (#/, #/devices/NAME, #/deployments/NAME), one live
// stream of changes per page (/v1/events), and refreshes paced so that a big fleet keeps
// neither the browser nor the hub busy: at most one refresh in flight, and the next no
// sooner than max(1 s, 3 × the last one's duration).

import { fleetPage } from './fleet.js';
import { devicePage } from './device.js';
import { deploymentPage } from './deployment.js';
import { h } from './util.js';

const main = document.getElementById('main');
const crumbs = document.getElementById('crumbs');
const liveEl = document.getElementById('live');
const errorEl = document.getElementById('error');

/** Re-read everything at least this often (ages, devices that went silent). */
const BACKSTOP_MS = 15000;

let page = null;
let source = null;
// `why` gathers what asked for the next refresh (nav, hello, status, presence, telemetry,
// fleet, resync, backstop, user); the page records it as data-refreshed-by, so that a test
// can tell a live update from the backstop.
const pace = { timer: null, running: false, again: false, lastMs: 0, lastEnd: 0, why: new Set() };

function pageFor(hash) {
  const [kind, name] = hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (kind === 'devices' && name) return devicePage(name, () => schedule('user'));
  if (kind === 'deployments' && name) return deploymentPage(name, () => schedule('user'));
  return fleetPage();
}

function navigate() {
  // What the old page still runs (a followed log) ends with it.
  page?.leave?.();
  page = pageFor(location.hash);
  clearTimeout(pace.timer);
  Object.assign(pace, { again: false, lastMs: 0, lastEnd: 0 });
  crumbs.replaceChildren(...page.crumbs.flatMap((c) => [h('span', { class: 'sep' }, '/'), c]));
  document.title = ['Drover', ...page.crumbs.map((c) => c.textContent)].join(' · ');
  main.replaceChildren(page.root);
  window.scrollTo(0, 0);
  schedule('nav');
  listen(page.stream);
}

/** Runs the page's refresh as soon as pacing allows. */
function schedule(why) {
  pace.why.add(why);
  if (pace.running) {
    pace.again = true;
    return;
  }
  clearTimeout(pace.timer);
  const gap = Math.max(1000, 3 * pace.lastMs);
  const wait = pace.lastEnd ? pace.lastEnd + gap - Date.now() : 0;
  pace.timer = setTimeout(refresh, Math.max(0, wait));
}

async function refresh() {
  const p = page;
  const why = [...pace.why].join(' ');
  pace.why.clear();
  pace.running = true;
  const t0 = performance.now();
  try {
    await p.refresh();
    errorEl.hidden = true;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    document.body.dataset.refreshedBy = why;
  } catch (e) {
    if (p === page) {
      errorEl.textContent = `Cannot read from the hub: ${e.message}`;
      errorEl.hidden = false;
    }
  } finally {
    pace.running = false;
    pace.lastMs = performance.now() - t0;
    pace.lastEnd = Date.now();
  }
  if (pace.again || p !== page) {
    pace.again = false;
    schedule('again');
  }
}

function listen(url) {
  if (source) source.close();
  source = new EventSource(url);
  // Sent on every (re)connect: what happened while away is unknown, so catch up.
  source.addEventListener('hello', () => {
    setLive(true);
    schedule('hello');
  });
  source.addEventListener('changes', (e) => {
    const c = JSON.parse(e.data);
    if (!page.wants(c)) return;
    if (c.status.length) schedule('status');
    if (Object.keys(c.presence).length) schedule('presence');
    if (c.telemetry.length) schedule('telemetry');
    if (c.fleet) schedule('fleet');
  });
  source.addEventListener('resync', () => schedule('resync'));
  // CLOSED: the hub refused the stream (e.g. too many open); the backstop still refreshes.
  source.onerror = () => setLive(false, source.readyState === EventSource.CLOSED);
}

function setLive(on, refused) {
  liveEl.className = `live ${on ? 'on' : 'off'}`;
  liveEl.textContent = on ? 'live' : refused ? 'not live: refreshing every 15 s' : 'reconnecting…';
  document.body.dataset.live = on ? '1' : '0';
}

window.addEventListener('hashchange', navigate);
setInterval(() => schedule('backstop'), BACKSTOP_MS);
navigate();

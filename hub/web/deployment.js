// One Deployment: its revisions, where its rollout stands, and which device runs which
// revision (with the workload's state there).

import {
  h, getJSON, enc, deviceHref, deploymentHref, clock, pill, table, events, facts, missing, ApiError,
} from './util.js';

const STATE_KIND = {
  Healthy: 'ok', Stable: 'ok', Updated: 'ok', Updating: 'warn', Pending: 'idle', Failed: 'bad', RolledBack: 'bad',
};

export function deploymentPage(name) {
  let devices = new Set();
  const parts = { head: h('div'), rollout: h('div'), devices: h('div'), revisions: h('div'), events: h('div') };
  const content = [parts.head,
    h('h2', null, 'Rollout'), parts.rollout, h('h2', null, 'Devices'), parts.devices,
    h('h2', null, 'Revisions'), parts.revisions, h('h2', null, 'Events'), parts.events];
  const root = h('div', { class: 'page', dataset: { page: 'deployment' } }, content);

  async function refresh() {
    const base = `/v1/deployments/${enc(name)}`;
    let detail, status, revisions;
    try {
      [detail, status, revisions] = await Promise.all([
        getJSON(base), getJSON(`${base}/rollout`), getJSON(`${base}/revisions`),
      ]);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
      devices = new Set();
      root.replaceChildren(missing(`No Deployment named “${name}” on this hub.`, e.message));
      return;
    }
    if (root.firstChild !== parts.head) root.replaceChildren(...content);
    devices = new Set(detail.deployment.devices);
    parts.head.replaceChildren(header(detail, status));
    parts.rollout.replaceChildren(rollout(status.rollout));
    parts.devices.replaceChildren(deviceTable(detail, status));
    parts.revisions.replaceChildren(table('revisions', ['revision', 'created', 'images', 'cause', ''],
      revisions.slice().reverse().map((r) => [
        h('b', null, r.revision), clock(r.created_ms), r.images.map((i) => h('code', { class: 'image' }, i)),
        r.cause, r.mark ? pill(r.mark, r.mark === 'rolled back' ? 'bad' : 'ok') : (r.current ? pill('current', 'ok') : ''),
      ])));
    parts.events.replaceChildren(events(detail.events));
  }

  return {
    crumbs: [h('a', { href: deploymentHref(name) }, name)],
    root, refresh, stream: '/v1/events',
    wants: (c) => c.fleet || c.status.some((d) => devices.has(d)) || Object.keys(c.presence).some((d) => devices.has(d)),
  };
}

function header(detail, status) {
  const d = detail.deployment;
  return h('div', { class: 'head' },
    h('h1', null, d.name, ' ', pill(`${d.ready}/${d.total} ready`, d.ready < d.total ? 'warn' : 'ok')),
    facts([
      ['revision', `${detail.revision}`],
      ['strategy', status.strategy],
      ['selector', h('code', null, d.selector || '(all devices)')],
      ['placement', d.placement],
    ]),
    detail.warnings.map((w) => h('p', { class: 'error-text' }, w)));
}

function rollout(r) {
  if (!r) return h('p', { class: 'muted' }, 'No rollout yet: every device runs the first revision.');
  const total = Math.max(1, r.total);
  const judged = r.healthy + r.failed;
  const segs = [
    ['healthy', r.healthy], ['failed', r.failed], ['updating', Math.max(0, r.updated - judged)], ['pending', r.pending],
  ];
  const bar = h('div', { class: 'bar', role: 'img', 'aria-label': 'rollout progress' },
    segs.filter(([, n]) => n > 0).map(([k, n]) => h('span', { class: k, style: { width: `${(100 * n) / total}%` }, title: `${n} ${k}` })));
  const kind = { Progressing: 'warn', Paused: 'warn', RolledBack: 'bad', Complete: 'ok' }[r.phase] || 'idle';
  return h('div', { class: 'rollout', dataset: { phase: r.phase } },
    h('p', null, pill(r.phase, kind), ` revision ${r.from} → ${r.to}, batch ${r.batch + 1}, started ${clock(r.started_ms)}`),
    bar,
    h('p', { class: 'legend' }, segs.map(([k, n]) => h('span', { class: `key ${k}` }, h('i'), `${n} ${k} `)),
      ` of ${r.total}`),
    r.reason ? h('p', { class: 'error-text' }, r.reason) : '');
}

function deviceTable(detail, status) {
  const placed = new Map(detail.placed.map((p) => [p.device, p]));
  const rows = status.devices.map((s) => {
    const p = placed.get(s.device);
    const cells = [
      h('a', { href: deviceHref(s.device) }, s.device),
      pill(s.online ? 'online' : 'offline', s.online ? 'ok' : 'idle'),
      `${s.revision}`,
      s.reported ? `${s.reported}` : '–',
      pill(s.state, STATE_KIND[s.state] || 'idle'),
      p ? p.phase : '–',
      p ? h('span', { class: 'restarts' }, p.restarts) : '–',
      s.message || p?.last_error || p?.reason || '',
    ];
    return h('tr', { dataset: { device: s.device } }, cells.map((c) => h('td', null, c)));
  });
  return table('devices', ['device', 'online', 'given', 'running', 'rollout', 'workload', 'restarts', 'message'],
    rows, 'placed on no device');
}

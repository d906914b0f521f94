// The fleet overview: counts, every device (state, workloads, restarts, generations,
// latest usage) and every Deployment (revision, rollout, readiness).

import {
  h, getJSON, enc, deviceHref, deploymentHref, bytes, percent, celsius, ago, pill,
  deviceHealth, labels, table, lastSeen,
} from './util.js';

/** Rows shown at most (a filter narrows them down). */
const MAX_ROWS = 500;
/** Deployments whose detail (revision, rollout) is read. */
const MAX_DETAILS = 50;

export function fleetPage() {
  let data = null;
  let filter = '';
  const cards = h('section', { class: 'cards' });
  const devices = h('div', { id: 'devices' });
  const deployments = h('div', { id: 'deployments' });
  const search = h('input', {
    type: 'search', placeholder: 'filter by name or label', 'aria-label': 'filter devices',
    oninput: (e) => {
      filter = e.target.value.trim().toLowerCase();
      if (data) renderDevices();
    },
  });
  const root = h('div', { class: 'page' }, cards,
    h('div', { class: 'section-head' }, h('h2', null, 'Devices'), search), devices,
    h('h2', null, 'Deployments'), deployments);

  function renderDevices() {
    const match = (d) => !filter || d.name.toLowerCase().includes(filter)
      || Object.entries(d.labels).some(([k, v]) => `${k}=${v}`.toLowerCase().includes(filter));
    const shown = data.devices.filter(match);
    const rows = shown.slice(0, MAX_ROWS).map((d) => deviceRow(d, data.usage.get(d.name)));
    const note = shown.length > MAX_ROWS
      ? h('p', { class: 'muted' }, `${MAX_ROWS} of ${shown.length} shown; filter to narrow down.`) : null;
    devices.replaceChildren(table('devices',
      ['device', 'state', 'workloads', 'restarts', 'generation', 'CPU', 'memory', 'temp', 'last seen', 'labels'],
      rows, 'no devices registered (drover-hub device add NAME)'), note ?? '');
  }

  async function refresh() {
    const [list, usage, deps] = await Promise.all([
      getJSON('/v1/devices'),
      getJSON('/v1/telemetry', true),
      getJSON('/v1/deployments'),
    ]);
    const details = await Promise.all(deps.slice(0, MAX_DETAILS)
      .map((d) => getJSON(`/v1/deployments/${enc(d.name)}`, true)));
    data = { devices: list, usage: new Map((usage || []).map((t) => [t.device, t])) };
    cards.replaceChildren(...summary(list, deps, details));
    renderDevices();
    deployments.replaceChildren(table('deployments',
      ['deployment', 'revision', 'rollout', 'ready', 'devices', 'selector'],
      deps.map((d, i) => deploymentRow(d, details[i])), 'no deployments (drover-hub apply -f FILE)'));
  }

  return { crumbs: [], root, stream: '/v1/events', refresh, wants: () => true };
}

function card(label, value, kind = '') {
  return h('div', { class: `card ${kind}`, dataset: { card: label } }, h('b', null, value), h('span', null, label));
}

function summary(devices, deps, details) {
  const online = devices.filter((d) => d.online).length;
  const healthy = devices.filter((d) => deviceHealth(d)[1] === 'ok').length;
  // An offline device's workloads are not counted ready (its last report may be stale).
  const ready = devices.reduce((n, d) => n + (d.online ? d.ready : 0), 0);
  const total = devices.reduce((n, d) => n + d.total, 0);
  const rolling = details.filter((d) => d?.rollout?.phase === 'Progressing').length;
  return [
    card('devices', devices.length),
    card('online', `${online}`, online < devices.length ? 'warn' : 'ok'),
    card('healthy', `${healthy}`, healthy < online ? 'warn' : 'ok'),
    card('workloads ready', `${ready}/${total}`, ready < total ? 'warn' : 'ok'),
    card('deployments', deps.length),
    card('rollouts in progress', rolling, rolling ? 'warn' : ''),
  ];
}

function deviceRow(d, sample) {
  const [state, kind] = deviceHealth(d);
  // An offline device's last sample is not its usage now; "last seen" still uses it.
  const t = d.online ? sample : null;
  const restarts = d.workloads.reduce((n, w) => n + w.restarts, 0);
  const gen = d.in_sync ? `${d.observed_generation}` : `${d.observed_generation} → ${d.desired_generation}`;
  const memory = t ? `${bytes(t.memory_used_bytes)} / ${bytes(t.memory_used_bytes + t.memory_available_bytes)}` : '–';
  const cells = [
    h('a', { href: deviceHref(d.name) }, d.name),
    pill(state, kind),
    h('span', { title: d.workloads.map((w) => `${w.name}: ${w.phase}`).join('\n') }, `${d.ready}/${d.total}`),
    h('span', { class: 'restarts' }, restarts),
    gen,
    t ? percent(t.cpu_percent) : '–',
    memory,
    t ? celsius(t.temperature_celsius) : '–',
    h('span', { class: 'nowrap' }, ago(lastSeen(d, sample))),
    labels(d.labels),
  ];
  return h('tr', { dataset: { device: d.name } }, cells.map((c) => h('td', null, c)));
}

function rolloutText(r) {
  if (!r) return '–';
  const progress = `${r.updated}/${r.total} updated, ${r.healthy} healthy${r.failed ? `, ${r.failed} failed` : ''}`;
  return `${r.phase} ${r.from} → ${r.to}: ${progress}`;
}

function deploymentRow(d, detail) {
  const phase = detail?.rollout?.phase;
  const kind = { Progressing: 'warn', Paused: 'warn', RolledBack: 'bad', Complete: 'ok' }[phase] || 'idle';
  const cells = [
    h('a', { href: deploymentHref(d.name) }, d.name),
    detail ? `${detail.revision}` : '–',
    detail?.rollout ? [pill(phase, kind), ' ', rolloutText(detail.rollout)] : '–',
    pill(`${d.ready}/${d.total}`, d.ready < d.total ? 'warn' : 'ok'),
    d.devices.length,
    h('code', null, d.selector || '(all devices)'),
  ];
  return h('tr', { dataset: { deployment: d.name } }, cells.map((c) => h('td', null, c)));
}

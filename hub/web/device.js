// One device: its state, latest usage, charts of CPU, memory and temperature over time,
// its workloads container by container (phase, health, probes, restarts, usage), a log
// viewer (logs.js) and its recent events. A device the hub does not know gets only that
// error and a link back.

import {
  h, getJSON, enc, deviceHref, bytes, percent, celsius, duration, ago, pill, deviceHealth,
  labels, table, events, facts, missing, lastSeen, ApiError,
} from './util.js';
import { lineChart } from './chart.js';
import { logViewer } from './logs.js';

const RANGES = [[60, '1 h'], [360, '6 h'], [1440, '24 h']];

export function devicePage(name, reload) {
  let minutes = 60;
  const parts = { head: h('div'), charts: h('section', { class: 'charts' }), workloads: h('div'), events: h('div') };
  const buttons = RANGES.map(([m, label]) => h('button', {
    type: 'button', dataset: { minutes: m }, class: m === minutes ? 'on' : '',
    onclick: () => {
      minutes = m;
      buttons.forEach((b) => b.classList.toggle('on', Number(b.dataset.minutes) === m));
      reload();
    },
  }, label));
  const logs = logViewer(name);
  const content = [parts.head,
    h('div', { class: 'section-head' }, h('h2', null, 'Usage'), h('div', { class: 'range' }, buttons)),
    parts.charts, h('h2', null, 'Workloads'), parts.workloads, h('h2', null, 'Logs'), logs.root,
    h('h2', null, 'Events'), parts.events];
  const root = h('div', { class: 'page', dataset: { page: 'device' } }, content);

  async function refresh() {
    const base = `/v1/telemetry/devices/${enc(name)}`;
    let detail, latest, history;
    try {
      [detail, latest, history] = await Promise.all([
        getJSON(`/v1/devices/${enc(name)}`),
        getJSON(base, true),
        getJSON(`${base}/history?minutes=${minutes}`, true),
      ]);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
      logs.stop();
      root.replaceChildren(missing(`No device named “${name}” is registered on this hub.`, e.message));
      return;
    }
    if (root.firstChild !== parts.head) root.replaceChildren(...content);
    parts.head.replaceChildren(header(detail, latest));
    parts.charts.replaceChildren(...charts(history?.points?.length ? history.points : latest ? [latest] : []));
    parts.workloads.replaceChildren(workloads(detail, latest, logs.open));
    logs.setWorkloads(detail.reported.map((w) => ({ name: w.name, containers: w.containers.map((c) => c.name) })));
    parts.events.replaceChildren(events(detail.events));
  }

  const crumbs = [h('a', { href: deviceHref(name) }, name)];
  return {
    crumbs, root, refresh, leave: logs.stop,
    stream: `/v1/events?device=${enc(name)}`,
    wants: (c) => c.fleet || c.status.length > 0 || c.telemetry.length > 0 || Object.keys(c.presence).length > 0,
  };
}

function header(detail, t) {
  const d = detail.device;
  const [state, kind] = deviceHealth(d);
  const pairs = [
    // Status comes every 30 s, telemetry often more often: the later of the two.
    ['last seen', ago(lastSeen(d, t))],
    ['generation', d.in_sync ? `${d.observed_generation} (in sync)` : `${d.observed_generation} → ${d.desired_generation}`],
    ['workloads ready', `${d.ready}/${d.total}`],
  ];
  if (t) {
    pairs.push(
      ['CPU', `${percent(t.cpu_percent)} (load ${t.load1.toFixed(2)})`],
      ['memory', `${bytes(t.memory_used_bytes)} used, ${bytes(t.memory_available_bytes)} available`],
      ['temperature', celsius(t.temperature_celsius)],
      ['disk free', bytes(t.disk_free_bytes)],
      ['network', `↓ ${bytes(t.net_rx_bytes)} ↑ ${bytes(t.net_tx_bytes)}`],
      ['uptime', duration(t.uptime_s)],
      ['agent memory', bytes(t.agent_rss_bytes)],
    );
    if (t.throttled) pairs.push(['throttled', `0x${t.throttled.toString(16)} (under-voltage or throttling)`]);
    if (t.dropped_samples) pairs.push(['samples lost offline', `${t.dropped_samples}`]);
  }
  return h('div', { class: 'head' },
    h('h1', null, d.name, ' ', pill(state, kind)),
    h('div', null, labels(d.labels)),
    facts(pairs));
}

/** The containers' series of `field`, keyed `workload/container`. */
function containerSeries(points, field) {
  const keys = [...new Set(points.flatMap((p) => (p.containers || []).map((c) => `${c.workload}/${c.container}`)))];
  return keys.map((key) => ({
    label: key,
    points: points.map((p) => {
      const c = (p.containers || []).find((x) => `${x.workload}/${x.container}` === key);
      return [p.time_s, c ? c[field] : null];
    }),
  }));
}

function charts(points) {
  const device = (field) => points.map((p) => [p.time_s, p[field]]);
  return [
    lineChart({
      title: 'CPU',
      note: 'device: % of all cores · containers: % of one core',
      series: [{ label: 'device', points: device('cpu_percent') }, ...containerSeries(points, 'cpu_percent')],
      format: percent, max: 10,
    }),
    lineChart({
      title: 'Memory',
      series: [{ label: 'device used', points: device('memory_used_bytes') }, ...containerSeries(points, 'memory_bytes')],
      format: bytes, binary: true,
    }),
    lineChart({
      title: 'Temperature',
      series: [{ label: 'SoC', points: device('temperature_celsius') }],
      format: celsius, max: 50,
    }),
  ];
}

function state(w) {
  if (w.reason?.CrashLoopBackOff) return ['CrashLoopBackOff', 'bad'];
  if (w.reason?.WaitingForDependency) return ['Waiting', 'idle'];
  const unhealthy = w.containers.some((c) => c.health === 'Unhealthy');
  const ready = w.phase === 'Running' && w.containers.every((c) => c.ready);
  if (w.phase === 'Running') {
    if (unhealthy) return ['Running (unhealthy)', 'bad'];
    return ready ? ['Running', 'ok'] : ['Running (not ready)', 'warn'];
  }
  return [w.phase, ['Failed', 'Error', 'BackOff'].includes(w.phase) ? 'bad' : 'idle'];
}

function probe(c) {
  if (c.health === 'None') return '–';
  const kind = { Healthy: 'ok', Starting: 'idle', Unhealthy: 'bad' }[c.health] || 'idle';
  const fails = c.probe_failures ? ` ${c.probe_failures} failed` : '';
  return [pill(c.health, kind), fails, c.probe_message ? h('div', { class: 'muted small' }, c.probe_message) : ''];
}

function containerRow(w, c, usage, openLogs) {
  const u = usage.get(`${w.name}/${c.name}`);
  const memory = u ? `${bytes(u.memory_bytes)} (peak ${bytes(u.memory_peak_bytes)})` : bytes(c.memory_bytes);
  const cells = [
    c.name,
    c.phase,
    c.ready ? 'yes' : 'no',
    probe(c),
    h('span', { class: 'restarts' }, c.restarts),
    u?.cpu_percent !== undefined ? percent(u.cpu_percent) : '–',
    [memory, c.memory_limit_bytes ? ` of ${bytes(c.memory_limit_bytes)}` : ''],
    h('code', { class: 'image' }, c.image),
    c.oom_killed ? 'OOM killed' : (c.last_error || (c.exit_code !== null ? `exit ${c.exit_code}` : '')),
    h('button', { type: 'button', class: 'logs', onclick: () => openLogs(w.name, c.name) }, 'logs'),
  ];
  return h('tr', { dataset: { container: c.name } }, cells.map((x) => h('td', null, x)));
}

function workloads(detail, t, openLogs) {
  const usage = new Map((t?.containers || []).map((c) => [`${c.workload}/${c.container}`, c]));
  const reported = new Map(detail.reported.map((w) => [w.name, w]));
  const names = [...new Set([...detail.desired.map((w) => w.name), ...reported.keys()])].sort();
  if (!names.length) return h('p', { class: 'muted' }, 'No workloads placed on this device.');
  return h('div', null, names.map((n) => {
    const w = reported.get(n);
    const desired = detail.desired.find((x) => x.name === n);
    if (!w) {
      return h('section', { class: 'workload', dataset: { workload: n } },
        h('h3', null, n, ' ', pill('not reported yet', 'idle')));
    }
    const [text, kind] = state(w);
    const rev = w.revision ? `revision ${w.revision}` : '';
    const extra = !desired ? ' (no longer desired)' : '';
    return h('section', { class: 'workload', dataset: { workload: n } },
      h('h3', null, n, ' ', pill(text, kind), ' ', h('span', { class: 'muted' }, rev, extra),
        ' restarts ', h('b', { class: 'restarts' }, w.restarts)),
      w.last_error ? h('p', { class: 'error-text' }, w.last_error) : '',
      w.rolled_back ? h('p', { class: 'error-text' },
        `rolled back by the device from ${w.rolled_back.from} to ${w.rolled_back.to}: ${w.rolled_back.reason}`) : '',
      table('containers', ['container', 'phase', 'ready', 'probes', 'restarts', 'CPU', 'memory', 'image', 'last exit', ''],
        w.containers.map((c) => containerRow(w, c, usage, openLogs))));
  }));
}

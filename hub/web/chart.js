// Line charts in plain SVG (a few dozen lines instead of a vendored library): time on x,
// one or more series on y from 0, a legend with each series' last value.

import { h } from './util.js';

const W = 460;
const H = 170;
const M = { left: 58, right: 10, top: 10, bottom: 22 };
const TIME_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
/** Points further apart than this (seconds) are not joined: the device was silent. */
const GAP_S = 180;

/**
 * A chart element. `series`: [{label, points: [[unix_s, value|null], ...]}];
 * `note` follows the title in small print; `format(v)` labels values; `binary` rounds the
 * y range in powers of 1024 (bytes); `min` and `max` widen the y range (e.g. 100 for percent).
 */
export function lineChart({ title, note = '', series, format, min = 0, max = null, binary = false }) {
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
  const svg = h('svg:svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'plot', role: 'img', 'aria-label': title,
    dataset: { points: String(all.length) },
  });
  const caption = h('figcaption', null, title, note ? h('span', { class: 'muted small' }, ` ${note}`) : '');
  const box = h('figure', { class: 'chart' }, caption, svg, legend(series, format));
  if (!all.length) {
    svg.append(h('svg:text', { x: W / 2, y: H / 2, class: 'empty', 'text-anchor': 'middle' },
      'no samples yet'));
    return box;
  }
  let [t0, t1] = extent(all.map((p) => p[0]));
  if (t1 - t0 < 120) [t0, t1] = [t1 - 120, t1 + 5];
  const lo = Math.min(min, ...all.map((p) => p[1]));
  const top = Math.max(max ?? 0, ...all.map((p) => p[1]), lo + 1e-9);
  const unit = binary && top >= 1024 ? 1024 ** Math.floor(Math.log(top) / Math.log(1024)) : 1;
  const hi = niceCeil(top / unit) * unit;
  const x = (t) => M.left + ((t - t0) / (t1 - t0)) * (W - M.left - M.right);
  const y = (v) => H - M.bottom - ((v - lo) / (hi - lo)) * (H - M.top - M.bottom);
  axes(svg, { t0, t1, lo, hi, x, y, format });
  series.forEach((s, i) => draw(svg, s.points, `s${i % 6}`, x, y));
  return box;
}

function extent(values) {
  return [Math.min(...values), Math.max(...values)];
}

/** 1, 2 or 5 times a power of ten, at least `v`. */
function niceCeil(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 4, 5, 8, 10].map((m) => m * p).find((n) => n >= v);
}

function axes(svg, { t0, t1, lo, hi, x, y, format }) {
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    svg.append(h('svg:line', { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(h('svg:text', { x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, format(v)));
  }
  const step = TIME_STEPS.find((s) => (t1 - t0) / s <= 6) || 86400;
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    svg.append(h('svg:line', { x1: x(t), x2: x(t), y1: M.top, y2: H - M.bottom, class: 'grid' }));
    const label = new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    svg.append(h('svg:text', { x: x(t), y: H - 6, 'text-anchor': 'middle' }, label));
  }
}

function draw(svg, points, cls, x, y) {
  let d = '';
  let prev = null;
  for (const [t, v] of points) {
    if (v === null || v === undefined) {
      prev = null;
      continue;
    }
    const join = prev !== null && t - prev <= GAP_S;
    d += `${join ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    prev = t;
  }
  if (d) svg.append(h('svg:path', { d, class: `line ${cls}` }));
  const last = points.filter((p) => p[1] !== null && p[1] !== undefined).at(-1);
  if (last) svg.append(h('svg:circle', { cx: x(last[0]), cy: y(last[1]), r: 3, class: `dot ${cls}` }));
}

function legend(series, format) {
  return h('div', { class: 'legend' }, series.map((s, i) => {
    const last = s.points.filter((p) => p[1] !== null && p[1] !== undefined).at(-1);
    return h('span', { class: `key s${i % 6}` }, h('i'), `${s.label} `,
      h('b', null, last ? format(last[1]) : '–'));
  }));
}

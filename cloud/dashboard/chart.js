// A small SVG time-series chart (no dependencies, no build step).
//
//   renderChart(container, { from, to, series: [{ name, color, points: [{ t, v }] }], thresholds: [{ value, label }] })
//
// Booleans are drawn as 0/1. The <svg> carries data-points (points drawn, all series) so tests and
// scripts can check what was rendered. Everything is built with DOM calls (no innerHTML), so names
// and labels can never inject markup.

const NS = 'http://www.w3.org/2000/svg';
export const PALETTE = ['#2563eb', '#d97706', '#059669', '#dc2626', '#7c3aed', '#0891b2', '#db2777', '#65a30d'];

function el(name, attrs = {}, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

const TIME_STEPS = [1e3, 5e3, 15e3, 30e3, 60e3, 300e3, 900e3, 1800e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3];

function timeLabel(t, step) {
  const d = new Date(t);
  const hh = String(d.getHours()).padStart(2, '0');
  const mm = String(d.getMinutes()).padStart(2, '0');
  const ss = String(d.getSeconds()).padStart(2, '0');
  if (step >= 86400e3) return `${d.getMonth() + 1}/${d.getDate()}`;
  return step < 60e3 ? `${hh}:${mm}:${ss}` : `${hh}:${mm}`;
}

function fmt(v) {
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 10) return String(Math.round(v * 10) / 10);
  return String(Math.round(v * 100) / 100);
}

export function renderChart(container, { from, to, series, thresholds = [], height = 200 }) {
  container.replaceChildren();
  const width = Math.max(280, container.clientWidth || 600);
  const m = { l: 44, r: 10, t: 10, b: 22 };
  const w = width - m.l - m.r;
  const h = height - m.t - m.b;
  const svg = el('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', class: 'chart-svg' }, container);

  const num = (v) => (typeof v === 'boolean' ? (v ? 1 : 0) : v);
  let lo = Infinity;
  let hi = -Infinity;
  let total = 0;
  for (const s of series) {
    for (const p of s.points) {
      const v = num(p.v);
      if (v < lo) lo = v;
      if (v > hi) hi = v;
      total++;
    }
  }
  for (const th of thresholds) {
    if (total === 0) break;
    lo = Math.min(lo, th.value);
    hi = Math.max(hi, th.value);
  }
  svg.setAttribute('data-points', String(total));
  if (total === 0) {
    el('text', { x: m.l + w / 2, y: m.t + h / 2, 'text-anchor': 'middle', class: 'chart-empty' }, svg).textContent = 'no data in this time range';
    return svg;
  }
  const allBoolean = series.every((s) => s.points.every((p) => typeof p.v === 'boolean'));
  if (allBoolean) {
    lo = 0;
    hi = 1;
  } else if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const pad = (hi - lo) * 0.08;
  lo -= pad;
  hi += pad;
  const x = (t) => m.l + ((t - from) / Math.max(1, to - from)) * w;
  const y = (v) => m.t + h - ((v - lo) / (hi - lo)) * h;

  // Grid and axes
  const grid = el('g', { class: 'grid' }, svg);
  const ystep = allBoolean ? 1 : niceStep(hi - lo, 4);
  for (let v = Math.ceil(lo / ystep) * ystep; v <= hi; v += ystep) {
    el('line', { x1: m.l, x2: m.l + w, y1: y(v), y2: y(v) }, grid);
    el('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, grid).textContent = allBoolean ? (v >= 0.5 ? 'true' : 'false') : fmt(v);
  }
  const tstep = TIME_STEPS.find((s) => (to - from) / s <= 6) ?? 86400e3;
  for (let t = Math.ceil(from / tstep) * tstep; t <= to; t += tstep) {
    el('line', { x1: x(t), x2: x(t), y1: m.t, y2: m.t + h, class: 'vgrid' }, grid);
    el('text', { x: x(t), y: height - 6, 'text-anchor': 'middle', class: 'tick' }, grid).textContent = timeLabel(t, tstep);
  }
  el('rect', { x: m.l, y: m.t, width: w, height: h, class: 'frame' }, svg);

  for (const th of thresholds) {
    const g = el('g', { class: 'threshold' }, svg);
    el('line', { x1: m.l, x2: m.l + w, y1: y(th.value), y2: y(th.value) }, g);
    el('text', { x: m.l + w - 4, y: y(th.value) - 4, 'text-anchor': 'end' }, g).textContent = th.label;
  }

  const clip = `clip-${Math.random().toString(36).slice(2)}`;
  el('rect', { x: m.l, y: m.t, width: w, height: h }, el('clipPath', { id: clip }, el('defs', {}, svg)));
  const plot = el('g', { 'clip-path': `url(#${clip})` }, svg);
  for (const s of series) {
    if (s.points.length === 0) continue;
    const pts = s.points.map((p) => `${x(p.t).toFixed(1)},${y(num(p.v)).toFixed(1)}`);
    el('path', { d: `M${pts.join('L')}`, class: 'series', stroke: s.color, 'data-name': s.name }, plot);
    if (s.points.length <= 150) {
      for (const p of s.points) {
        const c = el('circle', { cx: x(p.t).toFixed(1), cy: y(num(p.v)).toFixed(1), r: 2.5, class: 'pt', fill: s.color }, plot);
        el('title', {}, c).textContent = `${s.name}  ${new Date(p.t).toLocaleTimeString()}  ${typeof p.v === 'boolean' ? p.v : fmt(p.v)}`;
      }
    }
  }
  return svg;
}

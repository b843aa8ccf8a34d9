// The Sluice dashboard: devices with last-seen status, a chart per metric with a time-range picker,
// and alerts, kept live by the cloud's event stream (GET /api/v1/events, Server-Sent Events).
//
// Plain ES module, no build step. Data only ever enters the page through textContent and SVG
// attributes, never as markup. Read tokens (when the cloud requires one) are kept in localStorage and
// sent as a bearer header, which is why the event stream is read with fetch rather than EventSource.

import { PALETTE, renderChart } from './chart.js';

const ONLINE_MS = 60_000;
const STALE_MS = 5 * 60_000;
const MAX_DEFAULT_DEVICES = 4;
const EVERY_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600].map((s) => s * 1000);

const state = {
  token: localStorage.getItem('sluice.token') || '',
  devices: new Map(),
  selected: [],
  userSelected: false,
  rangeMs: 3_600_000,
  active: [],
  resolved: [],
  rules: [],
  charts: new Map(),
};

const $ = (id) => document.getElementById(id);

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c !== undefined && c !== null) e.append(c);
  return e;
}

class Unauthorized extends Error {}

async function api(path) {
  const res = await fetch(path, { headers: state.token ? { authorization: `Bearer ${state.token}` } : {} });
  if (res.status === 401) throw new Unauthorized();
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${body.code ?? ''} ${body.error ?? ''}`);
  return body;
}

function askToken() {
  $('token-form').hidden = false;
  setConn('needs token', 'error');
}

function setConn(text, s) {
  const c = $('conn');
  c.textContent = text;
  c.dataset.state = s;
}

function ago(ms) {
  if (ms < 0) ms = 0;
  if (ms < 60_000) return `${Math.floor(ms / 1000)}s ago`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m ago`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)}h ago`;
  return `${Math.floor(ms / 86_400_000)}d ago`;
}

function fmtValue(v) {
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return String(Math.round(v * 100) / 100);
}

function firingDevices() {
  return new Set(state.active.filter((a) => a.state === 'firing').map((a) => a.device));
}

function statusOf(d, now) {
  if (firingDevices().has(d.device)) return 'alarm';
  const age = now - d.lastSeen;
  return age < ONLINE_MS ? 'online' : age < STALE_MS ? 'stale' : 'offline';
}

// ---------- devices ----------

async function loadDevices() {
  const { devices } = await api('/api/v1/devices?values=1');
  for (const d of devices) state.devices.set(d.device, { ...state.devices.get(d.device), ...d });
  chooseDefaultSelection();
  renderDevices();
}

function chooseDefaultSelection() {
  if (state.userSelected) return;
  const firing = firingDevices();
  const ids = [...state.devices.keys()].sort((a, b) => (firing.has(b) ? 1 : 0) - (firing.has(a) ? 1 : 0) || a.localeCompare(b));
  const next = ids.slice(0, MAX_DEFAULT_DEVICES);
  if (next.join() !== state.selected.join()) {
    state.selected = next;
    scheduleCharts(0);
  }
}

function colorOf(device) {
  const i = state.selected.indexOf(device);
  return i < 0 ? undefined : PALETTE[i % PALETTE.length];
}

function renderDevices() {
  const now = Date.now();
  const tbody = $('devices').tBodies[0];
  const rows = [];
  for (const d of [...state.devices.values()].sort((a, b) => a.device.localeCompare(b.device))) {
    const s = statusOf(d, now);
    const values = Object.entries(d.values ?? {})
      .map(([k, v]) => `${k} ${fmtValue(v)}`)
      .join(' · ');
    const color = colorOf(d.device);
    const swatch = h('span', { class: 'swatch' });
    if (color) swatch.style.background = color;
    const tr = h(
      'tr',
      { class: color ? 'selected' : '', 'data-device': d.device, 'data-status': s, title: color ? 'charted: click to remove' : 'click to chart' },
      h('td', {}, h('span', { class: `dot ${s}`, title: s })),
      h('td', { class: 'name' }, swatch, d.device),
      h('td', { class: 'muted' }, d.gateway ?? ''),
      h('td', { class: 'last-seen', 'data-t': String(d.lastSeen) }, ago(now - d.lastSeen)),
      h('td', { class: 'values' }, values),
    );
    tr.addEventListener('click', () => toggleDevice(d.device));
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  if (rows.length === 0) tbody.append(h('tr', {}, h('td', { colSpan: 5, class: 'muted' }, 'no devices have reported yet')));
  $('count-devices').textContent = `${state.devices.size} device${state.devices.size === 1 ? '' : 's'}`;
}

function toggleDevice(device) {
  state.userSelected = true;
  state.selected = state.selected.includes(device) ? state.selected.filter((d) => d !== device) : [...state.selected, device];
  renderDevices();
  scheduleCharts(0);
}

function tickAges() {
  const now = Date.now();
  for (const td of document.querySelectorAll('#devices td.last-seen')) td.textContent = ago(now - Number(td.dataset.t));
  for (const tr of document.querySelectorAll('#devices tr[data-device]')) {
    const d = state.devices.get(tr.dataset.device);
    if (!d) continue;
    const s = statusOf(d, now);
    if (tr.dataset.status !== s) {
      tr.dataset.status = s;
      tr.querySelector('.dot').className = `dot ${s}`;
    }
  }
}

// ---------- alerts ----------

async function loadAlerts() {
  const [active, resolved, rules] = await Promise.all([
    api('/api/v1/alerts?state=active'),
    api('/api/v1/alerts?state=resolved&limit=10&from=-1d').catch(() => ({ alerts: [] })),
    api('/api/v1/rules').catch(() => ({ rules: [] })),
  ]);
  state.active = active.alerts;
  state.resolved = resolved.alerts;
  state.rules = rules.rules ?? [];
  renderAlerts();
  chooseDefaultSelection();
  renderDevices();
}

function alertItem(a) {
  const when = a.state === 'resolved' ? `resolved ${ago(Date.now() - a.resolvedAt)}` : a.state === 'firing' ? `since ${new Date(a.firedAt).toLocaleTimeString()}` : 'pending';
  return h(
    'li',
    { class: `alert ${a.state} sev-${a.severity}`, 'data-alert': a.id, 'data-state': a.state, 'data-rule': a.rule, 'data-device': a.device },
    h('span', { class: 'sev' }, a.severity),
    h('div', { class: 'what' }, h('strong', {}, `${a.rule} · ${a.device}`), h('div', { class: 'msg' }, a.message ?? '')),
    h('span', { class: 'when' }, when),
  );
}

function renderAlerts() {
  const list = $('alerts');
  list.replaceChildren(...state.active.map(alertItem));
  if (state.active.length === 0) list.append(h('li', { class: 'none' }, 'All clear: no active alerts.'));
  $('resolved').replaceChildren(...state.resolved.map(alertItem));
  const firing = state.active.filter((a) => a.state === 'firing').length;
  const pill = $('count-firing');
  pill.textContent = `${firing} firing`;
  pill.classList.toggle('hot', firing > 0);
}

// ---------- charts ----------

function everyFor(rangeMs) {
  const target = rangeMs / 240;
  return EVERY_STEPS.find((s) => s >= target) ?? EVERY_STEPS[EVERY_STEPS.length - 1];
}

function metricsOfSelection() {
  const types = new Map();
  for (const id of state.selected) {
    for (const [k, v] of Object.entries(state.devices.get(id)?.values ?? {})) if (!types.has(k)) types.set(k, typeof v);
  }
  return [...types.entries()].sort(([a, ta], [b, tb]) => (ta === tb ? a.localeCompare(b) : ta === 'boolean' ? 1 : -1));
}

let chartTimer;
let chartsLoading = false;
function scheduleCharts(delay = 3000) {
  if (chartTimer) return;
  chartTimer = setTimeout(() => {
    chartTimer = undefined;
    loadCharts().catch(onError);
  }, delay);
}

async function loadCharts() {
  if (chartsLoading) return scheduleCharts(1000);
  chartsLoading = true;
  try {
    const to = Date.now();
    const from = to - state.rangeMs;
    const every = everyFor(state.rangeMs);
    const metrics = metricsOfSelection();
    const results = await Promise.all(
      metrics.map(async ([metric, type]) => {
        if (state.selected.length === 0) return [metric, []];
        const qs = new URLSearchParams({ device: state.selected.join(','), metric, from: String(from), to: String(to), every: `${every / 1000}s`, fn: type === 'boolean' ? 'last' : 'mean' });
        const body = await api(`/api/v1/series?${qs}`);
        return [metric, body.series ?? [{ device: body.device, metric: body.metric, points: body.points }]];
      }),
    );
    state.charts = new Map(results.map(([m, series]) => [m, { from, to, series }]));
    renderCharts();
  } finally {
    chartsLoading = false;
  }
}

function thresholdsFor(metric) {
  const out = [];
  for (const r of state.rules) {
    if (r.metric !== metric) continue;
    for (const t of r.thresholds ?? []) out.push({ value: t, label: `${r.id} ${t}` });
  }
  return out;
}

function renderCharts() {
  const grid = $('charts');
  const cards = [];
  for (const [metric, c] of state.charts) {
    const body = h('div', { class: 'chart' });
    cards.push(h('figure', { class: 'chart-card', 'data-metric': metric }, h('figcaption', {}, metric), body));
  }
  grid.replaceChildren(...cards);
  if (cards.length === 0) grid.append(h('p', { class: 'muted' }, state.selected.length === 0 ? 'Select a device to chart its metrics.' : 'No metrics yet.'));
  for (const card of cards) {
    const c = state.charts.get(card.dataset.metric);
    renderChart(card.querySelector('.chart'), {
      from: c.from,
      to: c.to,
      series: c.series.map((s) => ({ name: s.device, color: colorOf(s.device) ?? '#888', points: s.points })),
      thresholds: thresholdsFor(card.dataset.metric),
    });
  }
  $('legend').replaceChildren(
    ...state.selected.map((d) => {
      const sw = h('span', { class: 'swatch' });
      sw.style.background = colorOf(d);
      return h('span', { class: 'legend-item' }, sw, d);
    }),
  );
}

// ---------- live events ----------

function onTelemetry({ devices }) {
  let charted = false;
  for (const d of devices) {
    const cur = state.devices.get(d.device);
    state.devices.set(d.device, {
      device: d.device,
      gateway: d.gateway,
      lastSeen: Math.max(cur?.lastSeen ?? 0, d.ts),
      values: { ...(cur?.values ?? {}), ...d.values },
    });
    if (state.selected.includes(d.device)) charted = true;
  }
  chooseDefaultSelection();
  renderDevices();
  if (charted) scheduleCharts();
}

let alertTimer;
function onAlert() {
  clearTimeout(alertTimer);
  alertTimer = setTimeout(() => loadAlerts().catch(onError), 300);
}

async function streamEvents() {
  for (;;) {
    try {
      const res = await fetch('/api/v1/events', { headers: state.token ? { authorization: `Bearer ${state.token}` } : {} });
      if (res.status === 401) return askToken();
      if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
      setConn('live', 'live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          let data = '';
          for (const line of chunk.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
          }
          if (!data) continue;
          const msg = JSON.parse(data);
          if (event === 'telemetry') onTelemetry(msg);
          else if (event === 'alert') onAlert(msg);
        }
      }
    } catch (err) {
      console.warn('event stream', err);
    }
    setConn('reconnecting…', 'error');
    await new Promise((r) => setTimeout(r, 3000));
    await refreshAll().catch(onError);
  }
}

// ---------- wiring ----------

function onError(err) {
  if (err instanceof Unauthorized) return askToken();
  console.error(err);
}

async function refreshAll() {
  await loadAlerts();
  await loadDevices();
  await loadCharts();
}

function init() {
  for (const b of $('range').querySelectorAll('button')) {
    b.addEventListener('click', () => {
      for (const o of $('range').querySelectorAll('button')) o.classList.toggle('active', o === b);
      state.rangeMs = Number(b.dataset.range);
      loadCharts().catch(onError);
    });
  }
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.token = $('token-input').value.trim();
    localStorage.setItem('sluice.token', state.token);
    $('token-form').hidden = true;
    refreshAll()
      .then(() => streamEvents())
      .catch(onError);
  });
  let resize;
  window.addEventListener('resize', () => {
    clearTimeout(resize);
    resize = setTimeout(renderCharts, 150);
  });
  setInterval(tickAges, 1000);
  setInterval(() => loadDevices().catch(onError), 60_000);
  refreshAll()
    .then(() => streamEvents())
    .catch(onError);
}

init();

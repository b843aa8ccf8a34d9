/**
 * The read API against a real influxd: several devices/metrics per /api/v1/series, downsampling and
 * window aggregates in that form, /api/v1/devices?values=1, /api/v1/alerts and /api/v1/events, and
 * validation: hostile device, metric, rule or state input is a 400 and never reaches InfluxDB.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileRules } from '../../cloud/alert-rules.js';
import { CloudServer } from '../../cloud/server.js';
import { influxQuery, startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { encodeBatch, type AggRecord, type RawRecord } from '../../protocols/batch.js';
import { tempDir, until } from '../support/tmp.js';

const DB = 'sluice_queries';
const T0 = Date.parse('2024-11-21T14:00:00Z');
const MIN = 60_000;

let influx: InfluxdHandle;
let dir: { path: string; remove(): Promise<void> };
let cloud: CloudServer;
let url: string;
let seq = 0;

async function post(recs: Omit<RawRecord, 'seq'>[], aggs: Omit<AggRecord, 'seq'>[] = []): Promise<void> {
  const first = seq + 1;
  const r = recs.map((x) => ({ ...x, seq: ++seq }) as RawRecord);
  const a = aggs.map((x) => ({ ...x, seq: ++seq }) as AggRecord);
  const res = await fetch(`${url}/api/v1/batches`, {
    method: 'POST',
    headers: { 'content-type': 'application/cbor', authorization: 'Bearer tq' },
    body: new Uint8Array(encodeBatch({ gw: 'gwQ', inc: 'i', first, last: seq, recs: r, aggs: a })),
  });
  expect(res.status).toBe(200);
}

beforeAll(async () => {
  influx = await startInfluxd();
  dir = await tempDir('sluice-cloud-queries-');
  cloud = new CloudServer({
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: dir.path,
    gatewayTokens: { gwQ: 'tq' },
    influx: { api: 1, url: influx.url, db: DB },
    logger: pino({ level: 'silent' }),
    // The test's event times are in 2024: read newest values over all of them.
    latestValuesWindowMs: 20 * 365 * 86_400_000,
    rules: compileRules({ rules: [{ id: 'hot', metric: 'temperature', devices: 'dev-*', above: 30, clear: 28, severity: 'critical' }] }),
  });
  ({ url } = await cloud.start());
  // dev-a: temperature and humidity every 10 s for 10 minutes; dev-b: temperature only, every 30 s.
  const recs: Omit<RawRecord, 'seq'>[] = [];
  for (let i = 0; i < 60; i++) recs.push({ dev: 'dev-a', ts: T0 + i * 10_000, vals: { temperature: 20 + i / 10, humidity: 50 - i / 10 } });
  for (let i = 0; i < 20; i++) recs.push({ dev: 'dev-b', ts: T0 + i * 30_000, vals: { temperature: 10 + i } });
  recs.sort((x, y) => x.ts - y.ts);
  const aggs: Omit<AggRecord, 'seq'>[] = [];
  for (let m = 0; m < 10; m++) {
    for (const dev of ['dev-a', 'dev-b']) aggs.push({ dev, win: '1m', start: T0 + m * MIN, end: T0 + (m + 1) * MIN, rev: 0, aggs: { temperature: { count: 6, min: m, max: m + 1, mean: m + 0.5, sum: 6 * m + 3, last: m + 1 } } });
  }
  await post(recs, aggs);
  // A later single-metric reading of dev-a: its newest point carries only `door_open`.
  await post([{ dev: 'dev-a', ts: T0 + 11 * MIN, vals: { door_open: true } }]);
});

afterAll(async () => {
  await cloud?.stop();
  await influx?.stop();
  await dir?.remove();
});

async function get(path: string, qs: Record<string, string | string[]> = {}): Promise<{ status: number; body: any }> {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(qs)) for (const x of [v].flat()) params.append(k, x);
  const res = await fetch(`${url}${path}?${params}`);
  return { status: res.status, body: await res.json() };
}

const range = { from: String(T0), to: String(T0 + 10 * MIN - 1) };

describe('GET /api/v1/series, several devices and metrics', () => {
  it('raw: one series per (device, metric) in request order, empty ones included', async () => {
    const { status, body } = await get('/api/v1/series', { device: 'dev-a,dev-b', metric: 'temperature,humidity', ...range });
    expect(status).toBe(200);
    expect(body.points).toBeUndefined();
    expect(body.series.map((s: any) => `${s.device}/${s.metric}:${s.points.length}`)).toEqual(['dev-a/temperature:60', 'dev-a/humidity:60', 'dev-b/temperature:20', 'dev-b/humidity:0']);
    expect(body.series[0].points[1]).toEqual({ t: T0 + 10_000, v: 20.1 });
    expect(body.series[1].points[1]).toEqual({ t: T0 + 10_000, v: 49.9 });
    expect(body.series[2].points[2]).toEqual({ t: T0 + 60_000, v: 12 });
  });

  it.each([
    ['mean', [20.25, 10.5]],
    ['min', [20, 10]],
    ['max', [20.5, 11]],
    ['last', [20.5, 11]],
    ['count', [6, 2]],
  ])('every=1m&fn=%s downsamples each device', async (fn, [a, b]) => {
    const { body } = await get('/api/v1/series', { device: ['dev-a', 'dev-b'], metric: 'temperature', ...range, every: '1m', fn });
    expect(body).toMatchObject({ every: 60_000, fn });
    const [sa, sb] = body.series;
    expect(sa.points).toHaveLength(10);
    expect(sb.points).toHaveLength(10);
    expect(sa.points[0].t).toBe(T0);
    expect(sa.points[0].v).toBeCloseTo(a, 9);
    expect(sb.points[0].v).toBeCloseTo(b, 9);
  });

  it('window aggregates, re-bucketed', async () => {
    const { body } = await get('/api/v1/series', { device: 'dev-a,dev-b', metric: 'temperature', ...range, window: '1m', fn: 'max', every: '5m' });
    expect(body.window).toBe('1m');
    expect(body.series.map((s: any) => s.points)).toEqual([
      [{ t: T0, v: 5 }, { t: T0 + 5 * MIN, v: 10 }],
      [{ t: T0, v: 5 }, { t: T0 + 5 * MIN, v: 10 }],
    ]);
  });

  it('one device and one metric keep the single-series shape', async () => {
    const { body } = await get('/api/v1/series', { device: 'dev-b', metric: 'temperature', ...range });
    expect(body.series).toBeUndefined();
    expect(body).toMatchObject({ device: 'dev-b', metric: 'temperature' });
    expect(body.points).toHaveLength(20);
  });
});

describe('GET /api/v1/devices', () => {
  it('values=1 adds each metric’s newest value, also ones the newest reading did not carry', async () => {
    const { body } = await get('/api/v1/devices', { values: '1' });
    expect(body.devices.map((d: any) => d.device)).toEqual(['dev-a', 'dev-b']);
    expect(body.devices[0]).toEqual({ device: 'dev-a', gateway: 'gwQ', lastSeen: T0 + 11 * MIN, values: { door_open: true, humidity: 44.1, temperature: 25.9 } });
    expect(body.devices[1].values).toEqual({ temperature: 29 });
  });

  it('without values=1 the shape is unchanged', async () => {
    const { body } = await get('/api/v1/devices');
    expect(body.devices[1]).toEqual({ device: 'dev-b', gateway: 'gwQ', lastSeen: T0 + 19 * 30_000 });
  });
});

describe('query validation', () => {
  const hostile = ['a" OR 1=1', "dev-a' OR '1'='1", 'dev-a,x;DROP', 'dev-a,', ',', '../x', 'dev-a,dev-b" OR "device" = "x', 'a\\'];
  it.each(hostile)('hostile device list %j → 400 SLUICE_BAD_QUERY', async (device) => {
    const { status, body } = await get('/api/v1/series', { device, metric: 'temperature', ...range });
    expect(status).toBe(400);
    expect(body.code).toBe('SLUICE_BAD_QUERY');
  });

  it.each(['temperature,x;DROP DATABASE sluice_queries', 'temperature,humidity") FROM x --', 'v0" FROM telemetry; --', 'temperature,'])('hostile metric list %j → 400', async (metric) => {
    const { status, body } = await get('/api/v1/series', { device: 'dev-a,dev-b', metric, ...range });
    expect(status).toBe(400);
    expect(body.code).toBe('SLUICE_BAD_QUERY');
  });

  it('too many devices or metrics → 400', async () => {
    const many = Array.from({ length: 101 }, (_, i) => `d${i}`).join(',');
    expect((await get('/api/v1/series', { device: many, metric: 'temperature' })).status).toBe(400);
    const metrics = Array.from({ length: 21 }, (_, i) => `m${i}`).join(',');
    expect((await get('/api/v1/series', { device: 'dev-a', metric: metrics })).status).toBe(400);
  });

  it.each<Record<string, string>>([
    { state: 'firing; DROP' },
    { state: 'all', device: "x' OR 1=1" },
    { state: 'all', rule: 'hot" OR "1"="1' },
    { limit: '0' },
    { from: 'yesterday' },
  ])('hostile /api/v1/alerts input %j → 400', async (qs) => {
    const { status, body } = await get('/api/v1/alerts', qs);
    expect(status).toBe(400);
    expect(body.code).toBe('SLUICE_BAD_QUERY');
  });

  it('the database survived every hostile query', async () => {
    const dbs = await influxQuery(influx.url, 'SHOW DATABASES');
    expect(dbs.results[0].series[0].values.flat()).toContain(DB);
  });
});

describe('alerts and live events', () => {
  it('/api/v1/events streams telemetry and alert transitions; /api/v1/alerts lists current and past ones', async () => {
    const ac = new AbortController();
    const res = await fetch(`${url}/api/v1/events`, { signal: ac.signal });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    const read = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          text += value;
        }
      } catch {
        // aborted
      }
    })();
    try {
      await until('hello', () => text.includes('event: hello'));
      const t = T0 + 20 * MIN;
      await post([
        { dev: 'dev-c', ts: t, vals: { temperature: 31 } },
        { dev: 'dev-c', ts: t + 1000, vals: { temperature: 27 } },
      ]);
      await until('alert events', () => (text.match(/event: alert/g) ?? []).length === 2);
      await until('telemetry event', () => text.includes('event: telemetry'));
      const events = text
        .split('\n\n')
        .filter((e) => e.startsWith('event: '))
        .map((e) => ({ event: /^event: (\w+)/.exec(e)![1], data: JSON.parse(/\ndata: (.*)/.exec(e)![1]) }));
      expect(events.filter((e) => e.event === 'alert').map((e) => e.data.state)).toEqual(['firing', 'resolved']);
      expect(events.find((e) => e.event === 'telemetry')!.data.devices).toEqual([{ device: 'dev-c', gateway: 'gwQ', ts: t + 1000, values: { temperature: 27 } }]);
    } finally {
      ac.abort();
      await read;
    }
    expect((await get('/api/v1/alerts')).body.alerts).toEqual([]);
    const all = await until('the history point', async () => {
      const { body } = await get('/api/v1/alerts', { state: 'all', from: String(T0) });
      return body.alerts.length === 1 && body.alerts[0].message ? body.alerts : undefined;
    });
    expect(all[0]).toMatchObject({ rule: 'hot', device: 'dev-c', severity: 'critical', state: 'resolved', value: 27, threshold: 28, firedAt: T0 + 20 * MIN, resolvedAt: T0 + 20 * MIN + 1000 });
    const rules = await get('/api/v1/rules');
    expect(rules.body.rules).toEqual([{ id: 'hot', severity: 'critical', notify: [], metric: 'temperature', condition: 'temperature > 30 (clears < 28)', thresholds: [30] }]);
  });
});

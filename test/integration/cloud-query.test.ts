/** GET /api/v1/series and /api/v1/devices against a real influxd, and the `sluice query` command. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { influxQuery, startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { CloudServer } from '../../cloud/server.js';
import { encodeBatch, type AggRecord, type RawRecord } from '../../protocols/batch.js';
import { runSluice } from '../support/cloud-cli.js';

const DB = 'sluice_query';
const T0 = Date.parse('2024-11-21T14:00:00Z');
const MIN = 60_000;

let influx: InfluxdHandle;
let dataDir: string;
let cloud: CloudServer;
let url: string;

beforeAll(async () => {
  influx = await startInfluxd();
  dataDir = await mkdtemp(join(tmpdir(), 'sluice-cloud-query-'));
  cloud = new CloudServer({
    listen: { host: '127.0.0.1', port: 0 },
    dataDir,
    gatewayTokens: { gwQ: 'tq', gwR: 'tr' },
    influx: { api: 1, url: influx.url, db: DB },
    logger: pino({ level: 'silent' }),
  });
  ({ url } = await cloud.start());
  // dev-q: one reading every 10 s for 10 minutes, temperature = minute index + (second / 100)
  const recs: RawRecord[] = [];
  for (let i = 0; i < 60; i++) {
    const ts = T0 + i * 10_000;
    recs.push({ seq: i + 1, dev: 'dev-q', ts, vals: { temperature: Math.floor(i / 6) + (i % 6) / 10, door_open: i % 2 === 0 } });
  }
  const aggs: AggRecord[] = [];
  for (let m = 0; m < 10; m++) {
    aggs.push({ seq: 61 + m, dev: 'dev-q', win: '1m', start: T0 + m * MIN, end: T0 + (m + 1) * MIN, rev: 0, aggs: { temperature: { count: 6, min: m, max: m + 0.5, mean: m + 0.25, sum: 6 * m + 1.5, last: m + 0.5 } } });
  }
  const post = async (gw: string, token: string, body: Buffer) => {
    const res = await fetch(`${url}/api/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/cbor', authorization: `Bearer ${token}` }, body: new Uint8Array(body) });
    expect(res.status).toBe(200);
  };
  await post('gwQ', 'tq', encodeBatch({ gw: 'gwQ', inc: 'i', first: 1, last: 70, recs, aggs }));
  await post('gwR', 'tr', encodeBatch({ gw: 'gwR', inc: 'i', first: 1, last: 1, recs: [{ seq: 1, dev: 'dev-r', ts: T0 + 5 * MIN, vals: { humidity: 40 } }], aggs: [] }));
});

afterAll(async () => {
  await cloud?.stop();
  await influx?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

async function series(qs: Record<string, string>) {
  const res = await fetch(`${url}/api/v1/series?${new URLSearchParams(qs)}`);
  return { status: res.status, body: (await res.json()) as any };
}

const range = { from: String(T0), to: new Date(T0 + 10 * MIN - 1).toISOString() };

describe('GET /api/v1/series', () => {
  it('raw points of one metric, times in ms', async () => {
    const { status, body } = await series({ device: 'dev-q', metric: 'temperature', ...range });
    expect(status).toBe(200);
    expect(body.device).toBe('dev-q');
    expect(body.metric).toBe('temperature');
    expect(body.points).toHaveLength(60);
    expect(body.points[0]).toEqual({ t: T0, v: 0 });
    expect(body.points[7]).toEqual({ t: T0 + 70_000, v: 1.1 });
  });

  it('boolean metrics come back as booleans', async () => {
    const { body } = await series({ device: 'dev-q', metric: 'door_open', ...range });
    expect(body.points.slice(0, 2)).toEqual([{ t: T0, v: true }, { t: T0 + 10_000, v: false }]);
  });

  it('every + fn buckets with GROUP BY time()', async () => {
    const mean = await series({ device: 'dev-q', metric: 'temperature', ...range, every: '1m', fn: 'mean' });
    expect(mean.body.points).toHaveLength(10);
    expect(mean.body.points[3].t).toBe(T0 + 3 * MIN);
    expect(mean.body.points[3].v).toBeCloseTo(3.25, 9);
    const max = await series({ device: 'dev-q', metric: 'temperature', ...range, every: '5m', fn: 'max' });
    expect(max.body.points).toEqual([{ t: T0, v: 4.5 }, { t: T0 + 5 * MIN, v: 9.5 }]);
    const count = await series({ device: 'dev-q', metric: 'temperature', ...range, every: '10m', fn: 'count' });
    expect(count.body.points).toEqual([{ t: T0, v: 60 }]);
  });

  it('window=1m reads the gateway aggregates', async () => {
    const mean = await series({ device: 'dev-q', metric: 'temperature', ...range, window: '1m' });
    expect(mean.body.points).toHaveLength(10);
    expect(mean.body.points[2]).toEqual({ t: T0 + 2 * MIN, v: 2.25 });
    const max = await series({ device: 'dev-q', metric: 'temperature', ...range, window: '1m', fn: 'max' });
    expect(max.body.points[2]).toEqual({ t: T0 + 2 * MIN, v: 2.5 });
    const counts = await series({ device: 'dev-q', metric: 'temperature', ...range, window: '1m', fn: 'count', every: '5m' });
    expect(counts.body.points).toEqual([{ t: T0, v: 30 }, { t: T0 + 5 * MIN, v: 30 }]);
  });

  it('relative times, and an unknown device gives no points', async () => {
    const { status, body } = await series({ device: 'nobody', metric: 'temperature', from: '-1h', to: 'now' });
    expect(status).toBe(200);
    expect(body.points).toEqual([]);
  });

  it.each(['a" OR 1=1', "a' OR '1'='1", 'x;DROP', '../', 'dev-q" OR "device" = "x', 'a\\'])('hostile device %j → 400 SLUICE_BAD_QUERY', async (device) => {
    const { status, body } = await series({ device, metric: 'temperature', ...range });
    expect(status).toBe(400);
    expect(body.code).toBe('SLUICE_BAD_QUERY');
  });

  it.each(['a" OR 1=1', 'x;DROP DATABASE sluice_query', '../', 'temperature") FROM x --'])('hostile metric %j → 400 SLUICE_BAD_QUERY', async (metric) => {
    const { status, body } = await series({ device: 'dev-q', metric, ...range });
    expect(status).toBe(400);
    expect(body.code).toBe('SLUICE_BAD_QUERY');
    const dbs = await influxQuery(influx.url, 'SHOW DATABASES');
    expect(dbs.results[0].series[0].values.flat()).toContain(DB);
  });

  it('a statement InfluxDB refuses (mean of a boolean) → 400 SLUICE_BAD_QUERY', async () => {
    const { status, body } = await series({ device: 'dev-q', metric: 'door_open', ...range, every: '1m', fn: 'mean' });
    expect(status).toBe(400);
    expect(body.code).toBe('SLUICE_BAD_QUERY');
  });
});

describe('read tokens', () => {
  it('with queryTokens configured, reads need one of them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-cloud-readers-'));
    const guarded = new CloudServer({
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: dir,
      gatewayTokens: { gwQ: 'tq' },
      influx: { api: 1, url: influx.url, db: DB },
      queryTokens: ['reader-secret'],
      logger: pino({ level: 'silent' }),
    });
    const { url: gurl } = await guarded.start();
    try {
      const qs = new URLSearchParams({ device: 'dev-q', metric: 'temperature', ...range });
      expect((await fetch(`${gurl}/api/v1/series?${qs}`)).status).toBe(401);
      expect((await fetch(`${gurl}/api/v1/devices`, { headers: { authorization: 'Bearer tq' } })).status).toBe(401);
      const ok = await fetch(`${gurl}/api/v1/series?${qs}`, { headers: { authorization: 'Bearer reader-secret' } });
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as any).points).toHaveLength(60);
      const cli = await runSluice(['query', '--cloud', gurl, '--device', 'dev-q', '--metric', 'temperature', '--from', range.from, '--to', range.to, '--token', 'reader-secret', '--json']);
      expect(cli.code).toBe(0);
      const denied = await runSluice(['query', '--cloud', gurl, '--device', 'dev-q', '--metric', 'temperature']);
      expect(denied.code).toBe(1);
      expect(denied.stderr).toContain('HTTP 401 SLUICE_UNAUTHORIZED');
    } finally {
      await guarded.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('GET /api/v1/devices', () => {
  it('lists devices with their gateway and last-seen time', async () => {
    const res = await fetch(`${url}/api/v1/devices`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      devices: [
        { device: 'dev-q', gateway: 'gwQ', lastSeen: T0 + 59 * 10_000 },
        { device: 'dev-r', gateway: 'gwR', lastSeen: T0 + 5 * MIN },
      ],
    });
  });
});

describe('sluice query', () => {
  it('prints an aligned table', async () => {
    const r = await runSluice(['query', '--cloud', url, '--device', 'dev-q', '--metric', 'temperature', '--from', range.from, '--to', range.to, '--every', '5m', '--fn', 'max']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        'dev-q temperature (max every 5m)',
        'time                      value',
        '2024-11-21T14:00:00.000Z  4.5',
        '2024-11-21T14:05:00.000Z  9.5',
        '2 points',
        '',
      ].join('\n'),
    );
  });

  it('prints JSON with --json', async () => {
    const r = await runSluice(['query', '--cloud', url, '--device', 'dev-q', '--metric', 'temperature', '--from', range.from, '--to', range.to, '--window', '1m', '--json']);
    expect(r.code).toBe(0);
    const body = JSON.parse(r.stdout);
    expect(body.points).toHaveLength(10);
  });

  it('reports HTTP errors clearly, exit 1', async () => {
    const r = await runSluice(['query', '--cloud', url, '--device', 'x;DROP', '--metric', 'temperature']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^sluice query: HTTP 400 SLUICE_BAD_QUERY: device must match/);
  });

  it('reports an unreachable cloud, exit 1', async () => {
    const r = await runSluice(['query', '--cloud', 'http://127.0.0.1:1', '--device', 'd', '--metric', 'm']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:1/);
  });
});

/** CloudServer ingest path against a real influxd 1.x, reached through a TCP relay so it can be stopped. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countPoints, influxQuery, startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { CloudServer, type CloudServerConfig } from '../../cloud/server.js';
import { WRITE_PART_LINES } from '../../cloud/ingest.js';
import { encodeBatch, type AggRecord, type RawRecord } from '../../protocols/batch.js';
import { startRelay, type Relay } from '../support/cloud-relay.js';

const DB = 'sluice_ingest';
const TOKENS = { gwA: 'token-of-a', gwB: 'token-of-b' };
const T0 = 1732200000000;

let influx: InfluxdHandle;
let influxDir: string;
let relay: Relay;
let dataDir: string;
let cloud: CloudServer;
let url: string;

function config(extra: Partial<CloudServerConfig> = {}): CloudServerConfig {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    dataDir,
    gatewayTokens: TOKENS,
    influx: { api: 1, url: relay.url, db: DB },
    maxBodyBytes: 64 * 1024,
    influxTimeoutMs: 3000,
    logger: pino({ level: 'silent' }),
    ...extra,
  };
}

beforeAll(async () => {
  influxDir = await mkdtemp(join(tmpdir(), 'sluice-cloud-influx-'));
  dataDir = await mkdtemp(join(tmpdir(), 'sluice-cloud-data-'));
  influx = await startInfluxd({ dataDir: influxDir });
  relay = await startRelay(influx.port);
  cloud = new CloudServer(config());
  ({ url } = await cloud.start());
});

afterAll(async () => {
  await cloud?.stop();
  await relay?.close();
  await influx?.stop();
  await rm(influxDir, { recursive: true, force: true });
  await rm(dataDir, { recursive: true, force: true });
});

function recs(dev: string, from: number, to: number, ts: (seq: number) => number = (s) => T0 + s * 1000): RawRecord[] {
  const out: RawRecord[] = [];
  for (let s = from; s <= to; s++) out.push({ seq: s, dev, ts: ts(s), vals: { temperature: 20 + s / 10, door_open: s % 2 === 0 }, tags: { room: 'lab 1' } });
  return out;
}

function batch(gw: string, inc: string, first: number, last: number, r: RawRecord[], aggs: AggRecord[] = []): Buffer {
  return encodeBatch({ gw, inc, first, last, recs: r, aggs });
}

async function post(body: Uint8Array, token: string | null = TOKENS.gwA, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/api/v1/batches`, {
    method: 'POST',
    headers: { 'content-type': 'application/cbor', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: new Uint8Array(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

const count = (where: string) => countPoints(influx.url, DB, 'telemetry', where);

async function metricValue(name: string, labels = '', at = url): Promise<number> {
  const text = await (await fetch(`${at}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('POST /api/v1/batches', () => {
  it('a good batch → 200 {acked}, points in InfluxDB with the right tags, values and times', async () => {
    const r = recs('dev-good', 1, 3);
    // two readings of one device in the same millisecond
    r.push({ seq: 4, dev: 'dev-good', ts: T0 + 3000, vals: { temperature: 99 } });
    const res = await post(batch('gwA', 'inc-1', 1, 4, r));
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ acked: 4 });
    expect(await count(`"device" = 'dev-good'`)).toBe(4);
    const body = await influxQuery(influx.url, `SELECT "temperature", "door_open", "gateway", "device", "room" FROM "telemetry" WHERE "device" = 'dev-good'`, DB);
    expect(body.results[0].series[0].values).toEqual([
      [T0 + 1000, 20.1, false, 'gwA', 'dev-good', 'lab 1'],
      [T0 + 2000, 20.2, true, 'gwA', 'dev-good', 'lab 1'],
      [T0 + 3000, 20.3, false, 'gwA', 'dev-good', 'lab 1'],
      [T0 + 3000, 99, null, 'gwA', 'dev-good', null],
    ]);
  });

  it('no token or an unknown token → 401; a token of gateway A sending for B → 403', async () => {
    const b = batch('gwA', 'inc-auth', 1, 1, recs('dev-auth', 1, 1));
    const none = await post(b, null);
    expect(none.status).toBe(401);
    expect(none.json.code).toBe('SLUICE_UNAUTHORIZED');
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await post(b, 'token-of-c')).status).toBe(401);
    expect((await post(b, `${TOKENS.gwA}x`)).status).toBe(401);
    const forbidden = await post(batch('gwB', 'inc-auth', 1, 1, recs('dev-auth', 1, 1)), TOKENS.gwA);
    expect(forbidden.status).toBe(403);
    expect(forbidden.json.code).toBe('SLUICE_FORBIDDEN');
    expect(forbidden.text).not.toContain(TOKENS.gwA);
    expect(await count(`"device" = 'dev-auth'`)).toBe(0);
  });

  it('malformed CBOR, a bad checksum and an unsupported version → 400 with the right code', async () => {
    const junk = await post(Buffer.from([0xff, 0x00, 0x13, 0x37]));
    expect(junk.status).toBe(400);
    expect(junk.json.code).toBe('SLUICE_BAD_BATCH');

    const good = batch('gwA', 'inc-bad', 1, 2, recs('dev-bad', 1, 2));
    const flipped = Buffer.from(good);
    const at = flipped.indexOf(Buffer.from('dev-bad'));
    flipped[at] ^= 0x01; // inside the body: the checksum no longer matches
    const crc = await post(flipped);
    expect(crc.status).toBe(400);
    expect(crc.json.code).toBe('SLUICE_BAD_CHECKSUM');

    const v2 = await post(encodeBatch({ v: 2, gw: 'gwA', inc: 'inc-bad', first: 1, last: 1, recs: [], aggs: [] }));
    expect(v2.status).toBe(400);
    expect(v2.json.code).toBe('SLUICE_UNSUPPORTED_VERSION');
    expect(v2.json.error).toMatch(/version 2/);

    const notCbor = await post(good, TOKENS.gwA, { 'content-type': 'application/json' });
    expect(notCbor.status).toBe(415);
    expect(await count(`"device" = 'dev-bad'`)).toBe(0);
  });

  it('a body over the limit → 413', async () => {
    const big = recs('dev-big', 1, 3000);
    const res = await post(batch('gwA', 'inc-big', 1, 3000, big));
    expect(res.status).toBe(413);
    expect(res.json.code).toBe('SLUICE_TOO_LARGE');
  });

  it('a streamed body (no Content-Length) that grows over the limit → 413', async () => {
    const chunk = new Uint8Array(16 * 1024);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(ctrl) {
        if (sent++ < 16) ctrl.enqueue(chunk);
        else ctrl.close();
      },
    });
    const res = await fetch(`${url}/api/v1/batches`, {
      method: 'POST',
      headers: { 'content-type': 'application/cbor', authorization: `Bearer ${TOKENS.gwA}` },
      body,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).code).toBe('SLUICE_TOO_LARGE');
  });

  it('a replayed batch → 200 with the same ack, nothing duplicated', async () => {
    const b = batch('gwA', 'inc-replay', 1, 5, recs('dev-replay', 1, 5));
    expect((await post(b)).json).toEqual({ acked: 5 });
    const before = await metricValue('sluice_cloud_replayed_records_total');
    const again = await post(b);
    expect(again.status).toBe(200);
    expect(again.json).toEqual({ acked: 5 });
    expect(await count(`"device" = 'dev-replay'`)).toBe(5);
    expect(await metricValue('sluice_cloud_replayed_records_total')).toBe(before + 5);
    // overlapping: 4..8, only 6..8 are new
    const overlap = await post(batch('gwA', 'inc-replay', 4, 8, recs('dev-replay', 4, 8)));
    expect(overlap.json).toEqual({ acked: 8 });
    expect(await count(`"device" = 'dev-replay'`)).toBe(8);
  });

  it('concurrent copies of one batch are applied one at a time: one write, the rest replays', async () => {
    const b = batch('gwA', 'inc-concurrent', 1, 50, recs('dev-conc', 1, 50));
    const before = await metricValue('sluice_cloud_replayed_records_total');
    const results = await Promise.all(Array.from({ length: 6 }, () => post(b)));
    expect(results.map((r) => r.json)).toEqual(Array(6).fill({ acked: 50 }));
    expect(await metricValue('sluice_cloud_replayed_records_total')).toBe(before + 5 * 50);
    expect(await count(`"device" = 'dev-conc'`)).toBe(50);
  });

  it('a gap → 409 naming the expected sequence; an unknown incarnation is adopted at its first batch', async () => {
    expect((await post(batch('gwA', 'inc-gap', 1, 10, recs('dev-gap', 1, 10)))).status).toBe(200);
    const gap = await post(batch('gwA', 'inc-gap', 15, 20, recs('dev-gap', 15, 20)));
    expect(gap.status).toBe(409);
    expect(gap.json).toMatchObject({ code: 'SLUICE_GAP', expected: 11 });
    expect(await count(`"device" = 'dev-gap'`)).toBe(10);
    // An incarnation this cloud never saw (new replica, wiped data dir) is adopted where it is…
    const fresh = await post(batch('gwA', 'inc-gap-2', 5, 6, recs('dev-gap', 5, 6)));
    expect(fresh.json).toEqual({ acked: 6 });
    // …and from then on gaps are detected for it too.
    expect((await post(batch('gwA', 'inc-gap-2', 9, 9, recs('dev-gap', 9, 9)))).json).toMatchObject({ code: 'SLUICE_GAP', expected: 7 });
    // the gateway quarantined 11..14 and sends a batch covering them without records
    expect((await post(batch('gwA', 'inc-gap', 11, 20, recs('dev-gap', 15, 20)))).json).toEqual({ acked: 20 });
  });

  it('aggregates land in telemetry_<win> with _count/_min/_max/_mean/_sum/_last', async () => {
    const start = T0 + 600_000;
    const aggs: AggRecord[] = [
      { seq: 3, dev: 'dev-agg', win: '1m', start, end: start + 60_000, rev: 0, aggs: { temperature: { count: 2, min: 20, max: 21, mean: 20.5, sum: 41, last: 21 } } },
      { seq: 4, dev: 'dev-agg', win: '1m', start, end: start + 60_000, rev: 1, aggs: { temperature: { count: 3, min: 19, max: 21, mean: 20, sum: 60, last: 19 }, door_open: { count: 3, mean: 0.33, last: true } } },
    ];
    const res = await post(batch('gwA', 'inc-agg', 1, 4, recs('dev-agg', 1, 2), aggs));
    expect(res.json).toEqual({ acked: 4 });
    const body = await influxQuery(influx.url, `SELECT * FROM "telemetry_1m" WHERE "device" = 'dev-agg'`, DB);
    const s = body.results[0].series[0];
    expect(s.values).toHaveLength(1);
    const row = Object.fromEntries(s.columns.map((c: string, i: number) => [c, s.values[0][i]]));
    expect(row).toMatchObject({
      time: start, gateway: 'gwA', device: 'dev-agg',
      temperature_count: 3, temperature_min: 19, temperature_max: 21, temperature_mean: 20, temperature_sum: 60, temperature_last: 19,
      door_open_count: 3, door_open_mean: 0.33, door_open_last: true,
    });
    expect(row).not.toHaveProperty('door_open_min');
  });

  it(`a large batch goes to InfluxDB in parts of ${WRITE_PART_LINES} points, its aggregates in order in the last part: every point once, the latest revision kept`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-cloud-parts-'));
    const big = new CloudServer(config({ dataDir: dir, maxBodyBytes: 4 * 1024 * 1024 }));
    const { url: bigUrl } = await big.start();
    try {
      const n = 2 * WRITE_PART_LINES + 500;
      const start = T0 + 7_200_000;
      const win = (seq: number, rev: number, last: number): AggRecord => ({ seq, dev: 'dev-parts', win: '1m', start, end: start + 60_000, rev, aggs: { temperature: { count: rev + 1, min: 1, max: 9, mean: 5, sum: 5 * (rev + 1), last } } });
      const writes = () => metricValue('sluice_cloud_influx_write_seconds_count', '', bigUrl);
      const before = await writes();
      const res = await fetch(`${bigUrl}/api/v1/batches`, {
        method: 'POST',
        headers: { 'content-type': 'application/cbor', authorization: `Bearer ${TOKENS.gwA}` },
        body: new Uint8Array(batch('gwA', 'inc-parts', 1, n + 3, recs('dev-parts', 1, n), [win(n + 1, 0, 1), win(n + 2, 1, 2), win(n + 3, 2, 3)])),
      });
      expect(await res.json()).toEqual({ acked: n + 3 });
      expect(await writes()).toBe(before + 3);
      expect(await count(`"device" = 'dev-parts'`)).toBe(n);
      const body = await influxQuery(influx.url, `SELECT "temperature_last", "temperature_count" FROM "telemetry_1m" WHERE "device" = 'dev-parts'`, DB);
      expect(body.results[0].series[0].values).toEqual([[start, 3, 3]]);
    } finally {
      await big.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('InfluxDB refusing the data itself → 400 SLUICE_INFLUX_WRITE, mark not advanced', async () => {
    expect((await post(batch('gwB', 'inc-conflict', 1, 1, [{ seq: 1, dev: 'dev-conflict', ts: T0, vals: { level: 1 } }]), TOKENS.gwB)).status).toBe(200);
    const res = await post(batch('gwB', 'inc-conflict', 2, 2, [{ seq: 2, dev: 'dev-conflict', ts: T0 + 1, vals: { level: true } }]), TOKENS.gwB);
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('SLUICE_INFLUX_WRITE');
    // the gateway quarantines seq 2 and covers it with an empty batch
    expect((await post(batch('gwB', 'inc-conflict', 2, 2, []), TOKENS.gwB)).json).toEqual({ acked: 2 });
  });

  it('the high-water mark survives a restart on the same data directory', async () => {
    const b = batch('gwB', 'inc-restart', 1, 3, recs('dev-restart', 1, 3));
    expect((await post(b, TOKENS.gwB)).json).toEqual({ acked: 3 });
    await cloud.stop();
    cloud = new CloudServer(config());
    ({ url } = await cloud.start());
    const again = await post(b, TOKENS.gwB);
    expect(again.json).toEqual({ acked: 3 });
    expect(await metricValue('sluice_cloud_replayed_records_total')).toBe(3);
    const gap = await post(batch('gwB', 'inc-restart', 5, 5, recs('dev-restart', 5, 5)), TOKENS.gwB);
    expect(gap.json.expected).toBe(4);
  });

  it('a high-water mark store damaged on disk: moved aside at start, the marks relearned from x-sluice-acked, nothing lost or written twice', async () => {
    const b1 = batch('gwB', 'inc-damaged', 1, 10, recs('dev-damaged', 1, 10));
    expect((await post(b1, TOKENS.gwB, { 'x-sluice-acked': '0' })).json).toEqual({ acked: 10 });
    await cloud.stop();
    // Reopening turns the store's write-ahead log into a table; then one byte of it is flipped.
    cloud = new CloudServer(config());
    ({ url } = await cloud.start());
    await cloud.stop();
    const { readdir, readFile, writeFile } = await import('node:fs/promises');
    const hwmDir = join(dataDir, 'hwm');
    const table = (await readdir(hwmDir)).filter((f) => f.endsWith('.ldb')).sort().at(-1)!;
    const t = await readFile(join(hwmDir, table));
    t[Math.floor(t.length / 4)] ^= 0x5a;
    await writeFile(join(hwmDir, table), t);
    cloud = new CloudServer(config());
    ({ url } = await cloud.start());
    expect(await metricValue('sluice_cloud_errors_total', '{reason="store_damaged"}')).toBe(1);
    expect((await readdir(dataDir)).filter((f) => f.startsWith('hwm.damaged-'))).toHaveLength(1);
    // The gateway goes on where it was acknowledged (its header says 10): accepted, not a gap.
    const b2 = batch('gwB', 'inc-damaged', 11, 20, recs('dev-damaged', 11, 20));
    expect((await post(b2, TOKENS.gwB, { 'x-sluice-acked': '10' })).json).toEqual({ acked: 20 });
    // A resend of the batch (its ack lost) is a replay.
    expect((await post(b2, TOKENS.gwB, { 'x-sluice-acked': '10' })).json).toEqual({ acked: 20 });
    expect(await count(`"device" = 'dev-damaged'`)).toBe(20);
  });

  it('InfluxDB down → 503 with Retry-After, mark not advanced; after it restarts the same batch succeeds', async () => {
    const b = batch('gwA', 'inc-outage', 1, 4, recs('dev-outage', 1, 4));
    await influx.stop();
    relay.setTarget(undefined);
    try {
      const res = await post(b);
      expect(res.status).toBe(503);
      expect(res.json.code).toBe('SLUICE_INFLUX_WRITE');
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await fetch(`${url}/readyz`)).status).toBe(503);
      // nothing was acknowledged, so no mark was stored for this incarnation either
      expect((await post(b)).status).toBe(503);
    } finally {
      influx = await startInfluxd({ dataDir: influxDir });
      relay.setTarget(influx.port);
    }
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    const res = await post(b);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ acked: 4 });
    expect(await count(`"device" = 'dev-outage'`)).toBe(4);
    // data written before the outage is still there (same data directory)
    expect(await count(`"device" = 'dev-good'`)).toBe(4);
  });
});

describe('service endpoints', () => {
  it('/healthz, /readyz and unknown routes', async () => {
    const h = await fetch(`${url}/healthz`);
    expect(h.status).toBe(200);
    expect((await h.text()).trim()).toBe('ok');
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    expect((await fetch(`${url}/nope`)).status).toBe(404);
  });

  it('/metrics exposes the cloud counters and the write histogram', async () => {
    const res = await fetch(`${url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    for (const name of [
      'sluice_cloud_batches_total',
      'sluice_cloud_points_written_total',
      'sluice_cloud_replayed_records_total',
      'sluice_cloud_errors_total',
      'sluice_cloud_influx_write_seconds_bucket',
    ]) {
      expect(text).toContain(name);
    }
    const b = batch('gwA', 'inc-metrics', 1, 2, recs('dev-metrics', 1, 2));
    const ok = await metricValue('sluice_cloud_batches_total', '{result="ok"}');
    const points = await metricValue('sluice_cloud_points_written_total', '{measurement="telemetry"}');
    await post(b);
    expect(await metricValue('sluice_cloud_batches_total', '{result="ok"}')).toBe(ok + 1);
    expect(await metricValue('sluice_cloud_points_written_total', '{measurement="telemetry"}')).toBe(points + 2);
    await post(b);
    expect(await metricValue('sluice_cloud_batches_total', '{result="replay"}')).toBeGreaterThanOrEqual(1);
    await post(b, 'bad');
    expect(await metricValue('sluice_cloud_batches_total', '{result="unauthorized"}')).toBeGreaterThanOrEqual(1);
  });
});

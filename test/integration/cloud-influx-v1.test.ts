/** InfluxV1Writer against a real influxd 1.x. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countPoints, freePort, influxQuery, startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { InfluxV1Writer, toLine } from '../../cloud/influx-writer.js';
import { aggToPoint, rawToPoint } from '../../cloud/points.js';
import { caught } from '../support/tmp.js';

let influx: InfluxdHandle;

beforeAll(async () => {
  influx = await startInfluxd();
});
afterAll(async () => {
  await influx?.stop();
});

/**
 * Query with exact nanosecond timestamps: RFC 3339 strings (no `epoch`), since epoch=ns numbers above
 * 2^53 lose their last digits in JSON.parse. influxQuery() asks for ms.
 */
async function queryNs(db: string, q: string): Promise<any[][]> {
  const res = await fetch(`${influx.url}/query`, { method: 'POST', body: new URLSearchParams({ q, db }) });
  const body: any = await res.json();
  return body.results?.[0]?.series?.[0]?.values ?? [];
}


describe('InfluxV1Writer', () => {
  it('creates the database on start', async () => {
    const w = new InfluxV1Writer({ api: 1, url: influx.url, db: 'v1_create' });
    await w.start();
    const body = await influxQuery(influx.url, 'SHOW DATABASES');
    expect(body.results[0].series[0].values.flat()).toContain('v1_create');
    await w.close();
  });

  it('writes raw points; two readings of one device in the same ms stay two points, at ns precision', async () => {
    const w = new InfluxV1Writer({ api: 1, url: influx.url, db: 'v1_raw' });
    await w.start();
    const ts = 1732200000123;
    await w.write([
      toLine(rawToPoint('gw1', { seq: 1, dev: 'd1', ts, vals: { temperature: 21.5, door_open: true }, tags: { room: 'a 1,=x' } })),
      toLine(rawToPoint('gw1', { seq: 2, dev: 'd1', ts, vals: { temperature: 21.7, door_open: false }, tags: { room: 'a 1,=x' } })),
    ]);
    expect(await countPoints(influx.url, 'v1_raw', 'telemetry')).toBe(2);
    const rows = await queryNs('v1_raw', 'SELECT "temperature", "door_open", "room", "gateway", "device" FROM "telemetry"');
    expect(rows).toEqual([
      ['2024-11-21T14:40:00.123000001Z', 21.5, true, 'a 1,=x', 'gw1', 'd1'],
      ['2024-11-21T14:40:00.123000002Z', 21.7, false, 'a 1,=x', 'gw1', 'd1'],
    ]);
  });

  it('a replayed record overwrites itself exactly', async () => {
    const w = new InfluxV1Writer({ api: 1, url: influx.url, db: 'v1_replay' });
    await w.start();
    const r = { seq: 41, dev: 'd2', ts: 1732200000500, vals: { temperature: 20 } };
    await w.write([toLine(rawToPoint('gw1', r))]);
    await w.write([toLine(rawToPoint('gw1', r))]);
    await w.write([toLine(rawToPoint('gw1', { ...r, vals: { temperature: 20.25 } }))]);
    expect(await countPoints(influx.url, 'v1_replay', 'telemetry')).toBe(1);
    expect(await queryNs('v1_replay', 'SELECT "temperature" FROM "telemetry"')).toEqual([['2024-11-21T14:40:00.500000041Z', 20.25]]);
  });

  it('writes aggregates with basicstats fields; a later revision overwrites the window', async () => {
    const w = new InfluxV1Writer({ api: 1, url: influx.url, db: 'v1_agg' });
    await w.start();
    const a = { seq: 5, dev: 'd1', win: '1m', start: 1732200000000, end: 1732200060000, rev: 0, aggs: { temperature: { count: 3, min: 20, max: 22, mean: 21, sum: 63, last: 22 } } };
    await w.write([toLine(aggToPoint('gw1', a))]);
    await w.write([toLine(aggToPoint('gw1', { ...a, seq: 9, rev: 1, aggs: { temperature: { count: 4, min: 19, max: 22, mean: 20.5, sum: 82, last: 22 } } }))]);
    const body = await influxQuery(influx.url, 'SELECT * FROM "telemetry_1m"', 'v1_agg');
    const s = body.results[0].series[0];
    expect(s.values).toHaveLength(1);
    const row = Object.fromEntries(s.columns.map((c: string, i: number) => [c, s.values[0][i]]));
    expect(row).toEqual({
      time: 1732200000000, device: 'd1', gateway: 'gw1',
      temperature_count: 4, temperature_min: 19, temperature_max: 22, temperature_mean: 20.5, temperature_sum: 82, temperature_last: 22,
    });
    const types = await influxQuery(influx.url, 'SHOW FIELD KEYS FROM "telemetry_1m"', 'v1_agg');
    expect(Object.fromEntries(types.results[0].series[0].values)).toMatchObject({ temperature_count: 'integer', temperature_mean: 'float' });
  });

  it('splits large writes into several requests', async () => {
    const w = new InfluxV1Writer({ api: 1, url: influx.url, db: 'v1_big' }, { maxLinesPerRequest: 1000 });
    await w.start();
    const lines = Array.from({ length: 3500 }, (_, i) => toLine(rawToPoint('gw1', { seq: i + 1, dev: 'd1', ts: 1732200000000 + i, vals: { x: i } })));
    await w.write(lines);
    expect(await countPoints(influx.url, 'v1_big', 'telemetry')).toBe(3500);
  });

  it('recreates a database that disappeared under it', async () => {
    const w = new InfluxV1Writer({ api: 1, url: influx.url, db: 'v1_wiped' });
    await w.start();
    await influxQuery(influx.url, 'DROP DATABASE "v1_wiped"');
    await w.write([toLine(rawToPoint('gw1', { seq: 1, dev: 'd1', ts: 1732200000000, vals: { x: 1 } }))]);
    expect(await countPoints(influx.url, 'v1_wiped', 'telemetry')).toBe(1);
  });

  it('bad data (field type conflict) → SLUICE_INFLUX_WRITE, not retryable', async () => {
    const w = new InfluxV1Writer({ api: 1, url: influx.url, db: 'v1_conflict' });
    await w.start();
    await w.write([toLine(rawToPoint('gw1', { seq: 1, dev: 'd1', ts: 1732200000000, vals: { x: 1 } }))]);
    const err = await caught(w.write([toLine(rawToPoint('gw1', { seq: 2, dev: 'd1', ts: 1732200000001, vals: { x: true } }))]));
    expect(err.code).toBe('SLUICE_INFLUX_WRITE');
    expect(err.retryable).toBe(false);
    expect(err.detail?.status).toBe(400);
    const garbage = await caught(w.write(['not line protocol']));
    expect(garbage.retryable).toBe(false);
  });

  it('InfluxDB unreachable → SLUICE_INFLUX_WRITE, retryable', async () => {
    const w = new InfluxV1Writer({ api: 1, url: `http://127.0.0.1:${await freePort()}`, db: 'x' }, { timeoutMs: 2000 });
    await w.start(); // does not throw: the database is created before the first write
    const err = await caught(w.write(['m f=1 1']));
    expect(err.code).toBe('SLUICE_INFLUX_WRITE');
    expect(err.retryable).toBe(true);
  });
});

/**
 * InfluxV2Writer (through @influxdata/influxdb-client) against a real /api/v2/write server:
 * VictoriaMetrics. See test/support/cloud-victoria.ts for what VictoriaMetrics does differently.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startInfluxd, waitFor, type InfluxdHandle } from '../../deploy/influxd.js';
import { InfluxV2Writer, toLine } from '../../cloud/influx-writer.js';
import { aggToPoint, rawToPoint } from '../../cloud/points.js';
import { startVictoriaMetrics, victoriaExport, type VictoriaHandle } from '../support/cloud-victoria.js';
import { caught } from '../support/tmp.js';

let vm: VictoriaHandle;

beforeAll(async () => {
  vm = await startVictoriaMetrics();
});
afterAll(async () => {
  await vm?.stop();
});


const cfg = () => ({ api: 2 as const, url: vm.url, org: 'sluice-org', bucket: 'sluice', token: 'secret-token' });

describe('InfluxV2Writer', () => {
  it('writes raw points and aggregates; write() resolves once the server accepted them', async () => {
    const w = new InfluxV2Writer(cfg());
    const now = Date.now() - 60_000; // VictoriaMetrics drops data outside its retention: use recent times
    const start = now - (now % 60_000);
    await w.write([
      toLine(rawToPoint('gw-v2', { seq: 1, dev: 'dev-a', ts: now, vals: { temperature: 21.5, door_open: true }, tags: { room: 'r1' } })),
      toLine(rawToPoint('gw-v2', { seq: 2, dev: 'dev-a', ts: now + 1000, vals: { temperature: 22 }, tags: { room: 'r1' } })),
      toLine(aggToPoint('gw-v2', { seq: 3, dev: 'dev-a', win: '1m', start, end: start + 60_000, rev: 0, aggs: { temperature: { count: 2, min: 21.5, max: 22, mean: 21.75, sum: 43.5 } } })),
    ]);
    const series = await waitFor('points visible in VictoriaMetrics', async () => {
      const s = await victoriaExport(vm.url, '{gateway="gw-v2"}');
      return s.length >= 7 ? s : undefined;
    }, { timeoutMs: 20_000 });
    const byName = Object.fromEntries(series.map((s) => [s.metric.__name__, s]));
    expect(byName.telemetry_temperature.metric).toMatchObject({ gateway: 'gw-v2', device: 'dev-a', room: 'r1' });
    expect(byName.telemetry_temperature.values).toEqual([21.5, 22]);
    // VictoriaMetrics keeps ms: the ns timestamp (ts·1e6 + seq) comes back as the reading's ms
    expect(byName.telemetry_temperature.timestamps).toEqual([now, now + 1000]);
    expect(byName.telemetry_door_open.values).toEqual([1]);
    expect(byName.telemetry_1m_temperature_count.values).toEqual([2]);
    expect(byName.telemetry_1m_temperature_mean.values).toEqual([21.75]);
    expect(byName.telemetry_1m_temperature_mean.timestamps).toEqual([start]);
    expect(Object.keys(byName).sort()).toEqual([
      'telemetry_1m_temperature_count', 'telemetry_1m_temperature_max', 'telemetry_1m_temperature_mean', 'telemetry_1m_temperature_min', 'telemetry_1m_temperature_sum',
      'telemetry_door_open', 'telemetry_temperature',
    ]);
    await w.close();
  });

  it('sends large writes (gzip, several requests) completely', async () => {
    const w = new InfluxV2Writer(cfg(), { maxLinesPerRequest: 2000 });
    const t0 = Date.now() - 3_600_000;
    const lines = Array.from({ length: 5000 }, (_, i) => toLine(rawToPoint('gw-big', { seq: i + 1, dev: 'dev-big', ts: t0 + i, vals: { x: i } })));
    await w.write(lines);
    await waitFor('5000 points visible', async () => {
      const s = await victoriaExport(vm.url, '{__name__="telemetry_x",gateway="gw-big"}');
      return s[0]?.values.length === 5000;
    }, { timeoutMs: 20_000 });
  });

  it('server unreachable → SLUICE_INFLUX_WRITE, retryable, and nothing retried in the background', async () => {
    const w = new InfluxV2Writer({ ...cfg(), url: `http://127.0.0.1:${await freePort()}` }, { timeoutMs: 2000 });
    const err = await caught(w.write(['m f=1 1']));
    expect(err.code).toBe('SLUICE_INFLUX_WRITE');
    expect(err.retryable).toBe(true);
  });

  describe('against a server without the v2 API (influxd 1.6.7)', () => {
    let influx: InfluxdHandle;
    beforeAll(async () => {
      influx = await startInfluxd();
    });
    afterAll(async () => {
      await influx?.stop();
    });

    it('an HTTP error becomes SLUICE_INFLUX_WRITE carrying the status', async () => {
      const w = new InfluxV2Writer({ ...cfg(), url: influx.url });
      const err = await caught(w.write(['m f=1 1']));
      expect(err.code).toBe('SLUICE_INFLUX_WRITE');
      expect(err.detail?.status).toBe(404);
      // 404 = missing bucket/API: the cloud's configuration, not the data, so the gateway retries
      expect(err.retryable).toBe(true);
    });
  });
});

describe('CloudServer with --influx-api 2', () => {
  it('ingests a batch through the v2 writer', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { pino } = await import('pino');
    const { CloudServer } = await import('../../cloud/server.js');
    const { encodeBatch } = await import('../../protocols/batch.js');
    const dataDir = await mkdtemp(join(tmpdir(), 'sluice-cloud-v2-'));
    const cloud = new CloudServer({
      listen: { host: '127.0.0.1', port: 0 },
      dataDir,
      gatewayTokens: { 'gw-srv': 'tok' },
      influx: cfg(),
      logger: pino({ level: 'silent' }),
    });
    const { url } = await cloud.start();
    try {
      const ts = Date.now() - 10_000;
      const body = encodeBatch({ gw: 'gw-srv', inc: 'i', first: 1, last: 2, recs: [
        { seq: 1, dev: 'dev-srv', ts, vals: { temperature: 1.5 } },
        { seq: 2, dev: 'dev-srv', ts: ts + 5, vals: { temperature: 2.5 } },
      ], aggs: [] });
      const res = await fetch(`${url}/api/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/cbor', authorization: 'Bearer tok' }, body: new Uint8Array(body) });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ acked: 2 });
      const s = await waitFor('points visible', async () => {
        const e = await victoriaExport(vm.url, '{__name__="telemetry_temperature",gateway="gw-srv"}');
        return e[0]?.values.length === 2 ? e[0] : undefined;
      }, { timeoutMs: 20_000 });
      expect(s.values).toEqual([1.5, 2.5]);
      expect(s.metric.device).toBe('dev-srv');
    } finally {
      await cloud.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

/**
 * Catch-up with several batches in flight: a real gateway draining a backlog into a real cloud and
 * influxd, with batches that may reach the cloud out of order. Everything arrives once, in order,
 * without a single 409; and out-of-order batches posted by hand are put back in order by the cloud.
 */
import mqtt from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CloudServer } from '../../cloud/server.js';
import { BatchSequencer } from '../../cloud/sequencer.js';
import { countPoints, freePort, startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { Gateway } from '../../gateway/gateway.js';
import { encodeBatch, type RawRecord } from '../../protocols/batch.js';
import { startRelay } from '../support/cloud-relay.js';
import { tempDir, until } from '../support/tmp.js';

let influx: InfluxdHandle;
let dir: { path: string; remove(): Promise<void> };

beforeAll(async () => {
  influx = await startInfluxd();
  dir = await tempDir();
});

afterAll(async () => {
  await influx?.stop();
  await dir?.remove();
});

/** A gateway whose cloud is expected at `cloudPort`: batches of 100, 3 in flight. */
async function startGateway(name: string, cloudPort: number, forwarder: { lingerMs?: number } = {}): Promise<Gateway> {
  const gw = new Gateway({
    id: 'gwp',
    dataDir: `${dir.path}/${name}`,
    mqtt: { host: '127.0.0.1', port: 0 },
    cloud: { url: `http://127.0.0.1:${cloudPort}`, token: 'tp' },
    allowAnonymous: true,
    logger: pino({ level: 'silent' }),
    log: { sync: 'never' },
    windows: { windows: [] },
    forwarder: { minBackoffMs: 5, maxBackoffMs: 50, breakerCooldownMs: 50, maxBatchRecords: 100, maxInFlight: 3, ...forwarder },
  });
  await gw.start();
  return gw;
}

/** `n` QoS 1 readings from device `dev` (values 1..n), all acknowledged; returns their base timestamp. */
async function fillBacklog(gw: Gateway, dev: string, n: number): Promise<number> {
  const c = await mqtt.connectAsync(gw.mqttUrl, { clientId: dev });
  const base = Date.now() - 3_600_000;
  const pending: Array<Promise<unknown>> = [];
  for (let i = 1; i <= n; i++) {
    pending.push(c.publishAsync(`devices/${dev}/telemetry`, JSON.stringify({ ts: base + i, seq: i, values: { v: i } }), { qos: 1 }));
    if (pending.length >= 50) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  await c.endAsync();
  return base;
}

const cloudConfig = (port: number, db: string) => ({
  listen: { host: '127.0.0.1', port },
  dataDir: `${dir.path}/cloud-${db}`,
  gatewayTokens: { gwp: 'tp' },
  influx: { api: 1 as const, url: influx.url, db },
  logger: pino({ level: 'silent' }),
});

describe('pipelined forwarding', () => {
  it('drains a backlog with 3 batches in flight: exactly once, no gaps', async () => {
    const port = await freePort();
    const gw = await startGateway('gw', port);
    const base = await fillBacklog(gw, 'p1', 3000);
    expect(gw.log.stats.backlogRecords).toBe(3000);
    const cloud = new CloudServer(cloudConfig(port, 'pipe'));
    await cloud.start();
    try {
      await until('backlog drained', () => gw.log.stats.backlogRecords === 0, 30_000);
      expect(await countPoints(influx.url, 'pipe', 'telemetry')).toBe(3000);
      expect(gw.forwarder.stats.gaps).toBe(0);
      expect(gw.forwarder.stats.batchesAcked).toBeGreaterThanOrEqual(30);
      // The catch-up's envelopes went out of reused buffers (forwarder.ts pooledEnvelope), and
      // once caught up those are let go: a small batch keeps only its own small one.
      const spare = () => (gw.forwarder as unknown as { spare: Buffer[] }).spare;
      expect(spare().length).toBeGreaterThanOrEqual(1);
      expect(spare().length).toBeLessThanOrEqual(4);
      const caughtUp = await mqtt.connectAsync(gw.mqttUrl, { clientId: 'p2' });
      await caughtUp.publishAsync('devices/p2/telemetry', JSON.stringify({ ts: base, seq: 1, values: { v: 1 } }), { qos: 1 });
      await caughtUp.endAsync();
      await until('the live reading forwarded', () => gw.forwarder.stats.recordsForwarded === 3001, 10_000);
      expect(spare().every((b) => b.length < 4096)).toBe(true);
    } finally {
      await gw.stop();
      await cloud.stop();
    }
  });

  it('InfluxDB lost mid-drain: the pipeline (a batch read ahead) falls back to retries and resumes; the tail of the backlog goes out without a linger', async () => {
    const port = await freePort();
    // The cloud reaches influxd through a relay, cut while batches are in flight (cloud answers 503).
    const relay = await startRelay(Number(new URL(influx.url).port));
    // A linger far longer than the test: the last 50 records (less than a batch) arrive only if
    // the end of a catch-up is sent at once; and the first linger, while the backlog builds up,
    // ends as soon as a full batch is there.
    const gw = await startGateway('gw-cut', port, { lingerMs: 600_000 });
    await fillBacklog(gw, 'p3', 3050);
    const cloud = new CloudServer({ ...cloudConfig(port, 'cut'), influx: { api: 1 as const, url: relay.url, db: 'cut' } });
    await cloud.start();
    try {
      await until('a third forwarded', () => gw.forwarder.stats.recordsForwarded >= 1000, 30_000);
      relay.setTarget(undefined);
      await until('a batch refused while InfluxDB is away', () => gw.forwarder.stats.retries > 0, 30_000);
      expect(gw.log.stats.backlogRecords).toBeGreaterThan(0);
      relay.setTarget(Number(new URL(influx.url).port));
      await until('backlog drained', () => gw.log.stats.backlogRecords === 0, 30_000);
      expect(await countPoints(influx.url, 'cut', 'telemetry')).toBe(3050);
      expect(gw.forwarder.stats.recordsForwarded).toBe(3050);
      expect(gw.forwarder.stats.gaps).toBe(0);
    } finally {
      await gw.stop();
      await cloud.stop();
      await relay.close();
    }
  });

  it('the cloud applies batches that arrive out of order in order', async () => {
    const cloud = new CloudServer(cloudConfig(0, 'ooo'));
    const { url } = await cloud.start();
    try {
      const recs = (from: number, to: number): RawRecord[] =>
        Array.from({ length: to - from + 1 }, (_, i) => ({ seq: from + i, dev: 'o1', ts: 1_732_200_000_000 + from + i, vals: { v: from + i } }));
      const post = (first: number, last: number) =>
        fetch(`${url}/api/v1/batches`, {
          method: 'POST',
          headers: { 'content-type': 'application/cbor', authorization: 'Bearer tp', 'x-sluice-acked': '0' },
          body: encodeBatch({ gw: 'gwp', inc: 'ooo', first, last, recs: recs(first, last), aggs: [] }) as any,
        }).then(async (r) => ({ status: r.status, body: await r.json() }));
      // Third first, then second, then first: all three answered 200, in order.
      const third = post(21, 30);
      const second = post(11, 20);
      // (no wait needed: if the first arrives first, that is fine too)
      const first = post(1, 10);
      expect(await Promise.all([first, second, third])).toEqual([
        { status: 200, body: { acked: 10 } },
        { status: 200, body: { acked: 20 } },
        { status: 200, body: { acked: 30 } },
      ]);
      expect(await countPoints(influx.url, 'ooo', 'telemetry')).toBe(30);
    } finally {
      await cloud.stop();
    }
  });
});

describe('BatchSequencer', () => {
  it('holds a batch until its predecessor is admitted, and orders the commits', async () => {
    const seq = new BatchSequencer(200);
    const order: string[] = [];
    const b = seq.admit('k', 11, 20, async () => 0).then(async (slot) => {
      order.push('admit 11');
      await slot.turn;
      order.push('commit 11');
      slot.done();
    });
    const a = await seq.admit('k', 1, 10, async () => 0);
    order.push('admit 1');
    await new Promise((r) => setImmediate(r));
    a.done();
    order.push('commit 1');
    await b;
    expect(order).toEqual(['admit 1', 'admit 11', 'commit 1', 'commit 11']);
    vi.useFakeTimers();
    try {
      let released = false;
      const c = seq.admit('k', 50, 60, async () => 0).then((slot) => {
        released = true;
        slot.done();
      }); // nobody fills 21..49
      await vi.advanceTimersByTimeAsync(199);
      expect(released).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      await c;
      expect(released).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
});

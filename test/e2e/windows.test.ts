/**
 * Event-time windows end to end: readings with known event times through the gateway process and
 * the cloud into InfluxDB's telemetry_1m; a late reading within grace revises the stored aggregate;
 * a SIGKILL in the middle of open windows changes nothing in the aggregates.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { WindowEngine } from '../../gateway/windows.js';
import { allPoints, startStack, type Stack } from '../support/stack.js';
import { until } from '../support/tmp.js';

let stack: Stack | undefined;
let client: MqttClient | undefined;

afterEach(async () => {
  await client?.endAsync(true).catch(() => undefined);
  client = undefined;
  await stack?.stop();
  stack = undefined;
});

const MIN = 60_000;
/** A minute boundary 30 minutes ago: recent enough for every clock check, long enough ago to be settled. */
const T = Math.floor((Date.now() - 30 * MIN) / MIN) * MIN;

async function publish(c: MqttClient, dev: string, seq: number, ts: number, values: Record<string, number | boolean>): Promise<void> {
  await c.publishAsync(`devices/${dev}/telemetry`, JSON.stringify({ ts, seq, values }), { qos: 1 });
}

describe('event-time windows through gateway and cloud', () => {
  it('telemetry_1m holds exactly the expected fields; a late reading within grace updates the stored aggregate', async () => {
    stack = await startStack({ gatewayId: 'gw-win' });
    const s = stack;
    client = await mqtt.connectAsync(s.mqttUrl, { clientId: 'w1' });
    await publish(client, 'w1', 1, T + 1_000, { temperature: 10, door_open: true });
    await publish(client, 'w1', 2, T + 40_000, { temperature: 30, door_open: true });
    await publish(client, 'w1', 3, T + 20_000, { temperature: 20, door_open: false }); // out of order, in lateness
    // Watermark = max event time − 10 s: a reading at T+75 s closes [T, T+60 s).
    await publish(client, 'w1', 4, T + 75_000, { temperature: 50, door_open: false });
    const first = await until('window T in telemetry_1m', async () => {
      const p = await allPoints(s, 'telemetry_1m', `"device" = 'w1'`);
      return p.find((x) => x.time === T);
    });
    expect(first).toMatchObject({
      gateway: 'gw-win',
      device: 'w1',
      temperature_count: 3,
      temperature_min: 10,
      temperature_max: 30,
      temperature_mean: 20,
      temperature_sum: 60,
      temperature_last: 30, // greatest event time (T+40 s), not the last to arrive
      door_open_count: 3,
      door_open_last: true,
    });
    expect(first.door_open_mean).toBeCloseTo(2 / 3, 12);
    expect(first.door_open_min).toBeUndefined();

    // Late (window already closed) but within grace: the window is re-emitted, the point overwritten.
    await publish(client, 'w1', 5, T + 50_000, { temperature: 40, door_open: false });
    const revised = await until('revised window T', async () => {
      const p = (await allPoints(s, 'telemetry_1m', `"device" = 'w1'`)).filter((x) => x.time === T);
      return p.length === 1 && p[0].temperature_count === 4 ? p[0] : undefined;
    });
    expect(revised).toMatchObject({ temperature_count: 4, temperature_sum: 100, temperature_mean: 25, temperature_max: 40, temperature_last: 40, door_open_mean: 0.5, door_open_last: false });

    // Far beyond grace: counted as late-dropped, kept in the raw stream.
    await publish(client, 'w1', 6, T + 300_000, { temperature: 1, door_open: false }); // watermark → T+290 s
    await publish(client, 'w1', 7, T + 5_000, { temperature: 99, door_open: true });
    await until('late reading stored raw', async () => (await allPoints(s, 'telemetry', `"device" = 'w1'`)).length === 7);
    const st: any = await (await fetch(`${s.gatewayHttp}/status`)).json();
    expect(st.windows.lateDropped).toBe(1);
    expect((await allPoints(s, 'telemetry_1m', `"device" = 'w1'`)).find((x) => x.time === T)!.temperature_count).toBe(4);

    // The query API reads aggregates.
    const res = await fetch(`${s.cloudUrl}/api/v1/series?device=w1&metric=temperature&window=1m&fn=max&from=${T - 1}&to=${T + 10 * MIN}`);
    const body: any = await res.json();
    expect(body.points[0]).toEqual({ t: T, v: 40 });
  });

  it('a SIGKILL in the middle of open windows: aggregates identical to an uninterrupted run', async () => {
    stack = await startStack({ gatewayId: 'gw-winkill', gatewayArgs: ['--windows', '1m,5m/1m'] });
    const s = stack;
    const port = Number(new URL(s.mqttUrl).port);
    // A deterministic stream: 3 devices, one reading every 7 s of event time over 12 minutes,
    // some out of order within the allowed lateness.
    const readings: Array<{ dev: string; seq: number; ts: number; values: Record<string, number | boolean> }> = [];
    let x = 42;
    const rnd = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (const dev of ['k1', 'k2', 'k3']) {
      let seq = 0;
      for (let t = 0; t < 12 * MIN; t += 7_000) {
        const jitter = rnd() < 0.2 ? -Math.floor(rnd() * 8_000) : 0;
        readings.push({ dev, seq: ++seq, ts: T - 15 * MIN + t + jitter, values: { temperature: Math.round(rnd() * 400) / 10, door_open: rnd() < 0.3 } });
      }
    }
    // Reference: the engine fed the same stream without interruption.
    const ref = new WindowEngine({ windows: ['1m', '5m/1m'], allowedLatenessMs: 10_000, graceMs: 60_000, now: () => Date.now() });
    const expected = new Map<string, any>();
    for (const r of readings) for (const o of ref.add(r.dev, r.ts, r.values)) expected.set(`${o.win}|${o.dev}|${o.start}`, o);

    const clients = new Map<string, MqttClient>();
    const connect = async (dev: string) => {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: dev, reconnectPeriod: 0 });
      clients.set(dev, c);
      return c;
    };
    const killAt = Math.floor(readings.length / 2);
    for (let i = 0; i < readings.length; i++) {
      if (i === killAt) {
        // Kill -9 mid-stream (windows open, checkpoint somewhere behind), restart on the same data.
        await Promise.all([...clients.values()].map((c) => c.endAsync(true).catch(() => undefined)));
        clients.clear();
        await s.gateway.stop('SIGKILL');
        await s.startGateway({ mqttPort: port, extraArgs: ['--windows', '1m,5m/1m'] });
      }
      const r = readings[i];
      const c = clients.get(r.dev) ?? (await connect(r.dev));
      await publish(c, r.dev, r.seq, r.ts, r.values);
    }
    for (const c of clients.values()) await c.endAsync();
    const want = (win: string) => [...expected.values()].filter((o) => o.win === win);
    for (const win of ['1m', '5m_1m']) {
      const points = await until(`all ${win} windows stored`, async () => {
        const p = await allPoints(s, `telemetry_${win}`, `"device" =~ /^k/`);
        return p.length >= want(win).length ? p : undefined;
      }, 30_000, 200);
      expect(points).toHaveLength(want(win).length);
      for (const p of points) {
        const o = expected.get(`${win}|${p.device}|${p.time}`);
        expect(o, `unexpected window ${win} ${p.device} ${p.time}`).toBeDefined();
        expect(p.temperature_count).toBe(o.aggs.temperature.count);
        expect(p.temperature_sum).toBeCloseTo(o.aggs.temperature.sum, 9);
        expect(p.temperature_min).toBe(o.aggs.temperature.min);
        expect(p.temperature_max).toBe(o.aggs.temperature.max);
        expect(p.temperature_last).toBe(o.aggs.temperature.last);
        expect(p.door_open_count).toBe(o.aggs.door_open.count);
        expect(p.door_open_mean).toBeCloseTo(o.aggs.door_open.mean, 12);
      }
    }
  });
});

/**
 * The whole path on real parts: simulated devices (mqtt.js) and mosquitto_pub → gateway process
 * (aedes, LevelDB) → cloud process → private influxd → query API.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSim } from '../../devices-sim/sim.js';
import { allPoints, startStack, type Stack } from '../support/stack.js';
import { until } from '../support/tmp.js';

const exec = promisify(execFile);
let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
});

afterAll(async () => {
  await stack?.stop();
});

describe('device → gateway → cloud → InfluxDB → query', () => {
  it('20 devices × 50 QoS 1 readings arrive as exactly 1000 points with the right values, timestamps and tags', async () => {
    const published = new Map<string, { device: string; ts: number; values: Record<string, unknown> }>();
    let clock = Date.now();
    const result = await runSim(
      { url: stack.mqttUrl, devices: 20, rate: 20, qos: 1, format: 'json', count: 50, prefix: 'e2e', seed: 7 },
      {
        // A strictly increasing clock: every reading has a distinct, known event time.
        now: () => ++clock,
        onPublish: (ev) => published.set(`${ev.deviceId}@${ev.ts}`, { device: ev.deviceId, ts: ev.ts, values: ev.values as any }),
      },
    );
    expect(result.sent).toBe(1000);
    expect(result.acked).toBe(1000);
    expect(result.errors).toBe(0);

    const points = await until('1000 points in InfluxDB', async () => {
      const p = await allPoints(stack, 'telemetry', `"device" =~ /^e2e-/`);
      return p.length >= 1000 ? p : undefined;
    });
    expect(points).toHaveLength(1000);
    for (const p of points) {
      const want = published.get(`${p.device}@${p.time}`);
      expect(want, `point ${p.device}@${p.time} was never published`).toBeDefined();
      expect(p.gateway).toBe(stack.gatewayId);
      expect(p.temperature).toBeCloseTo(want!.values.temperature as number, 9);
      expect(p.humidity).toBeCloseTo(want!.values.humidity as number, 9);
      expect(p.door_open).toBe(want!.values.door_open);
    }
    expect(new Set(points.map((p) => `${p.device}@${p.time}`)).size).toBe(1000);

    // The query API returns the same series.
    const dev = 'e2e-0003';
    const from = Math.min(...[...published.values()].map((v) => v.ts)) - 1;
    const res = await fetch(`${stack.cloudUrl}/api/v1/series?device=${dev}&metric=temperature&from=${from}&to=${clock + 1}`);
    expect(res.status).toBe(200);
    const body: any = await res.json();
    const expected = [...published.values()].filter((v) => v.device === dev).sort((a, b) => a.ts - b.ts);
    expect(body.points).toHaveLength(50);
    expect(body.points.map((p: any) => p.t)).toEqual(expected.map((e) => e.ts));
    expect(body.points.map((p: any) => p.v)).toEqual(expected.map((e) => e.values.temperature));
  });

  it('a reading published with mosquitto_pub arrives in InfluxDB', async () => {
    const { port } = new URL(stack.mqttUrl);
    const ts = 1_732_200_000_123;
    await exec('mosquitto_pub', [
      '-h', '127.0.0.1', '-p', port, '-q', '1', '-i', 'mosq-dev-1',
      '-t', 'devices/mosq-dev-1/telemetry',
      '-m', JSON.stringify({ ts, values: { temperature: 21.5, door_open: true }, seq: 42, tags: { room: 'a1' } }),
    ]);
    // The single-metric form as well: a plain number on devices/{id}/telemetry/{metric}.
    await exec('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-q', '1', '-t', 'devices/mosq-dev-1/telemetry/humidity', '-m', '48.25']);
    const points = await until('both mosquitto readings stored', async () => {
      const p = await allPoints(stack, 'telemetry', `"device" = 'mosq-dev-1'`);
      return p.length >= 2 ? p : undefined;
    });
    const full = points.find((p) => p.time === ts)!;
    expect(full).toMatchObject({ device: 'mosq-dev-1', gateway: stack.gatewayId, room: 'a1', temperature: 21.5, door_open: true });
    const single = points.find((p) => p.time !== ts)!;
    expect(single.humidity).toBe(48.25);
  });

  it('a bad payload from mosquitto_pub is counted and harms nothing else', async () => {
    const { port } = new URL(stack.mqttUrl);
    await exec('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-q', '1', '-t', 'devices/mosq-bad/telemetry', '-m', '{"values":{"temperature":"warm"}}']);
    await exec('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-q', '1', '-t', 'devices/mosq-bad/telemetry', '-m', JSON.stringify({ ts: 1_732_200_000_999, values: { temperature: 5 } })]);
    await until('good reading stored', async () => (await allPoints(stack, 'telemetry', `"device" = 'mosq-bad'`)).length === 1);
    const metrics = await (await fetch(`${stack.gatewayHttp}/metrics`)).text();
    expect(metrics).toMatch(/sluice_gateway_dropped_total\{reason="bad_payload"\} 1/);
  });
});

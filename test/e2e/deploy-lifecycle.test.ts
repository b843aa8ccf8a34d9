/**
 * Graceful lifecycle under load, as systemd drives it: SIGTERM to the gateway and then to the cloud
 * while 20 QoS 1 devices publish. Each process must exit 0 within its stop bound (the gateway's
 * `stopTimeout`, here 5 s; the cloud's 15 s; systemd's TimeoutStopSec is 20 s), and every reading a
 * device got a PUBACK for must reach InfluxDB exactly once after both come back.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runSim } from '../../devices-sim/sim.js';
import { allPoints, startStack, type Stack } from '../support/stack.js';
import { tempDir, until } from '../support/tmp.js';

const GATEWAY_STOP_BOUND_MS = 5_000;
const CLOUD_STOP_BOUND_MS = 15_000;

let stack: Stack | undefined;
let cfgDir: Awaited<ReturnType<typeof tempDir>> | undefined;

afterAll(async () => {
  await stack?.stop();
  await cfgDir?.remove();
});

describe('SIGTERM during load', () => {
  it('gateway and cloud exit 0 within their bounds; no acknowledged reading is lost or doubled', async () => {
    cfgDir = await tempDir('sluice-lifecycle-');
    const cfg = join(cfgDir.path, 'gateway.yaml');
    writeFileSync(cfg, `stopTimeout: ${GATEWAY_STOP_BOUND_MS}ms\n`);
    stack = await startStack({ gatewayId: 'gw-term', gatewayArgs: ['--config', cfg] });
    const s = stack;
    const port = Number(new URL(s.mqttUrl).port);
    const acked = new Set<string>();
    const published = new Set<string>();
    let clock = Date.now();
    let done = false;
    const timings: Record<string, number> = {};

    const disrupt = (async () => {
      await until('400 acks before the gateway SIGTERM', () => acked.size >= 400 || done, 60_000, 5);
      let t0 = performance.now();
      const gwCode = await s.gateway.stop('SIGTERM', 30_000);
      timings.gatewayStopMs = performance.now() - t0;
      expect(gwCode).toBe(0);
      await s.startGateway({ mqttPort: port });

      const target = acked.size + 400;
      await until('400 more acks before the cloud SIGTERM', () => acked.size >= target || done, 60_000, 5);
      t0 = performance.now();
      const cloudCode = await s.cloud.stop('SIGTERM', 30_000);
      timings.cloudStopMs = performance.now() - t0;
      expect(cloudCode).toBe(0);
      await s.startCloud();
    })();

    const result = await runSim(
      { url: s.mqttUrl, devices: 20, rate: 40, qos: 1, format: 'cbor', count: 100, prefix: 'term', seed: 5, drainTimeoutMs: 30_000 },
      {
        now: () => ++clock,
        mqttOptions: { reconnectPeriod: 50, connectTimeout: 2000 },
        onPublish: (ev) => published.add(`${ev.deviceId}@${ev.ts}`),
        onAck: (ev) => acked.add(`${ev.deviceId}@${ev.ts}`),
      },
    );
    done = true;
    await disrupt;
    expect(result.acked).toBe(acked.size);
    expect(timings.gatewayStopMs, 'gateway: SIGTERM → exit').toBeLessThan(GATEWAY_STOP_BOUND_MS);
    expect(timings.cloudStopMs, 'cloud: SIGTERM → exit').toBeLessThan(CLOUD_STOP_BOUND_MS);
    console.log(`SIGTERM → exit under load: gateway ${timings.gatewayStopMs.toFixed(0)} ms, cloud ${timings.cloudStopMs.toFixed(0)} ms; ${acked.size} readings acknowledged`);

    const points = await until(
      'every acknowledged reading in InfluxDB',
      async () => {
        const p = await allPoints(s, 'telemetry', `"device" =~ /^term-/`);
        const keys = new Set(p.map((q) => `${q.device}@${q.time}`));
        for (const k of acked) if (!keys.has(k)) return undefined;
        return p;
      },
      60_000,
      200,
    );
    const keys = points.map((p) => `${p.device}@${p.time}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const k of keys) expect(published.has(k)).toBe(true);
  });
});

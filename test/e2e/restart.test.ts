/**
 * Restarts of the gateway process under load, on the same data directory: SIGTERM (graceful) and
 * SIGKILL at random moments. Every PUBACKed reading must be in InfluxDB exactly once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { runSim } from '../../devices-sim/sim.js';
import { allPoints, startStack, type Stack } from '../support/stack.js';
import { until } from '../support/tmp.js';

let stack: Stack | undefined;

afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

/**
 * Run 20 QoS 1 devices while `disrupt` restarts the gateway; then check that InfluxDB holds every
 * acknowledged reading exactly once and nothing that was never published.
 */
async function runWithDisruption(signal: NodeJS.Signals, restarts: number, seed: number): Promise<{ acked: number; stored: number }> {
  stack = await startStack({ gatewayId: `gw-${signal.toLowerCase()}` });
  const s = stack;
  const port = Number(new URL(s.mqttUrl).port);
  const published = new Set<string>();
  const acked = new Set<string>();
  let clock = Date.now();
  let restarting = false;
  let done = false;
  // Deterministic "random" moments: a seeded generator picks how many acks to wait between kills.
  let x = seed;
  const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

  const disrupt = (async () => {
    for (let i = 0; i < restarts; i++) {
      const target = acked.size + 100 + Math.floor(rand() * 300);
      await until(`${target} acks before restart ${i + 1}`, () => acked.size >= target || done, 60_000, 5);
      if (done) return;
      restarting = true;
      await s.gateway.stop(signal);
      await s.startGateway({ mqttPort: port });
      restarting = false;
    }
  })();
  const result = await runSim(
    { url: s.mqttUrl, devices: 20, rate: 25, qos: 1, format: 'cbor', count: 120 + restarts * 40, prefix: 'rs', seed, drainTimeoutMs: 30_000 },
    {
      now: () => ++clock,
      mqttOptions: { reconnectPeriod: 50, connectTimeout: 2000 },
      onPublish: (ev) => published.add(`${ev.deviceId}@${ev.ts}`),
      onAck: (ev) => acked.add(`${ev.deviceId}@${ev.ts}`),
    },
  );
  done = true;
  await disrupt;
  expect(restarting).toBe(false);
  expect(result.acked).toBe(acked.size);

  const points = await until('every acknowledged reading stored', async () => {
    const p = await allPoints(s, 'telemetry', `"device" =~ /^rs-/`);
    const keys = new Set(p.map((q) => `${q.device}@${q.time}`));
    for (const k of acked) if (!keys.has(k)) return undefined;
    return p;
  }, 60_000, 200);
  const keys = points.map((p) => `${p.device}@${p.time}`);
  // exactly once: no reading stored twice…
  expect(new Set(keys).size).toBe(keys.length);
  // …and nothing stored that was never published.
  for (const k of keys) expect(published.has(k)).toBe(true);
  return { acked: acked.size, stored: points.length };
}

describe('gateway restarts on the same data directory', () => {
  it('SIGTERM mid-stream: every acknowledged reading arrives exactly once', async () => {
    const r = await runWithDisruption('SIGTERM', 1, 11);
    expect(r.stored).toBeGreaterThanOrEqual(r.acked);
  });

  it('SIGKILL at 5 random moments: every acknowledged reading arrives exactly once', async () => {
    const r = await runWithDisruption('SIGKILL', 5, 23);
    expect(r.stored).toBeGreaterThanOrEqual(r.acked);
  });
});

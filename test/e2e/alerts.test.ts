/**
 * Alerts end to end on real parts: a device publishes over MQTT → gateway process (aedes, LevelDB) →
 * cloud process with --rules → private influxd; a webhook receiver (real HTTP server) gets the
 * notifications; `sluice alerts` lists them. Simulated background devices (devices-sim) share the path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSim } from '../../devices-sim/sim.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/cloud-alerts.js';
import { runSluice } from '../support/cloud-cli.js';
import { ScriptedDevice, startAlertStack, type AlertStack } from '../support/cloud-stack.js';
import { allPoints } from '../support/stack.js';
import { until } from '../support/tmp.js';

let hook: WebhookReceiver;
let stack: AlertStack;

beforeAll(async () => {
  hook = await startWebhookReceiver();
  stack = await startAlertStack({
    // Retry the cloud quickly after its restart (the default backoff grows to 30 s).
    gatewayArgs: ['--max-backoff', '500ms'],
    rules: `
rules:
  - id: hot
    metric: temperature
    devices: "e2e-hot-*"
    above: 30
    for: 2s
    clear: 28
    severity: critical
    notify: [ops]
  - id: sim-hot
    metric: temperature
    devices: "bg-*"
    above: 40
    notify: [ops]
notifiers:
  ops: { webhook: ${hook.url} }
`,
  });
});

afterAll(async () => {
  await stack?.stop();
  await hook?.close();
});

async function outboxEmpty(): Promise<boolean> {
  const text = await (await fetch(`${stack.cloudUrl}/metrics`)).text();
  return /^sluice_cloud_outbox_pending 0$/m.test(text);
}

/** `sluice …` with the cloud's commands (the same register() bin/main.ts calls). */
async function sluice(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const r = await runSluice(args);
  expect(r.code, r.stderr).toBe(0);
  return r;
}

describe('threshold alert: device → gateway → cloud → webhook + InfluxDB', () => {
  it('one firing and, after the value falls below clear, one resolved; both in the alerts measurement', async () => {
    const device = await ScriptedDevice.connect(stack.mqttUrl, 'e2e-hot-1');
    const t0 = Date.now() - 60_000;
    // 29.5 and 29 lie between clear (28) and the threshold (30): the alert must not flap there.
    const values = [25, 27, 29, 31, 32, 33, 31, 29.5, 29, 30.5, 29, 27, 26];
    const background = runSim({ url: stack.mqttUrl, devices: 3, rate: 20, count: 20, qos: 1, format: 'json', prefix: 'bg', seed: 3 });
    try {
      for (let i = 0; i < values.length; i++) await device.publish(t0 + i * 1000, { temperature: values[i], humidity: 50 });
    } finally {
      await device.close();
    }
    expect((await background).acked).toBe(60);

    await until('firing and resolved delivered', () => hook.received.length >= 2, 30_000);
    await until('outbox drained', outboxEmpty);
    expect(hook.received.map((h) => h.body.state)).toEqual(['firing', 'resolved']);
    const [firing, resolved] = hook.received.map((h) => h.body);
    expect(firing).toMatchObject({ rule: 'hot', device: 'e2e-hot-1', severity: 'critical', value: 33, threshold: 30, ts: t0 + 5000, since: t0 + 3000 });
    expect(resolved).toMatchObject({ rule: 'hot', device: 'e2e-hot-1', value: 27, threshold: 28, ts: t0 + 11_000, firedAt: t0 + 5000, id: firing.id });
    expect(hook.received[0].headers['idempotency-key']).toBe(`${firing.id}:firing`);
    expect(hook.received[1].headers['idempotency-key']).toBe(`${firing.id}:resolved`);

    const points = await until('history in InfluxDB', async () => {
      const p = await allPoints(stack, 'alerts', `"rule" = 'hot'`);
      return p.filter((x) => x.state === 'firing' || x.state === 'resolved').length >= 2 ? p : undefined;
    });
    const byState = (s: string) => points.filter((p) => p.state === s);
    expect(byState('firing')).toHaveLength(1);
    expect(byState('resolved')).toHaveLength(1);
    expect(byState('pending')).toHaveLength(1);
    expect(byState('firing')[0]).toMatchObject({ time: t0 + 5000, device: 'e2e-hot-1', severity: 'critical', value: 33, alert_id: firing.id });
    expect(byState('resolved')[0]).toMatchObject({ time: t0 + 11_000, value: 27, fired_at: t0 + 5000 });
    expect(typeof byState('resolved')[0].message).toBe('string');
    // Background devices (18–26 °C) never crossed 40.
    expect(await allPoints(stack, 'alerts', `"rule" = 'sim-hot'`)).toEqual([]);
  });

  it('`sluice alerts` lists them; the API filters by state and device', async () => {
    const [firing, all, jsonOut] = await Promise.all([
      sluice(['alerts', '--cloud', stack.cloudUrl]),
      sluice(['alerts', '--cloud', stack.cloudUrl, '--state', 'all', '--device', 'e2e-hot-1']),
      sluice(['alerts', '--cloud', stack.cloudUrl, '--state', 'all', '--json']),
    ]);
    expect(firing.stdout).toBe('no alerts\n');
    const lines = all.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^STATE\s+SEVERITY\s+RULE\s+DEVICE\s+VALUE\s+THRESHOLD\s+SINCE\s+RESOLVED\s+MESSAGE$/);
    expect(lines[1]).toMatch(/^resolved\s+critical\s+hot\s+e2e-hot-1\s+27\s+28\s+\d{4}-/);
    expect(lines.at(-1)).toBe('1 alert, 0 firing');
    const json = JSON.parse(jsonOut.stdout);
    expect(json.alerts).toHaveLength(1);
    expect(json.alerts[0]).toMatchObject({ rule: 'hot', device: 'e2e-hot-1', state: 'resolved' });
    const bad = await fetch(`${stack.cloudUrl}/api/v1/alerts?device=${encodeURIComponent("x' OR 1=1")}`);
    expect(bad.status).toBe(400);
  });

  it('a cloud restart and a gateway replay fire nothing again; alerts after the restart still work', async () => {
    await stack.stopCloud();
    // While the cloud is down the device keeps publishing: the gateway buffers and later resends.
    const device = await ScriptedDevice.connect(stack.mqttUrl, 'e2e-hot-1');
    const t1 = Date.now() - 30_000;
    try {
      await device.publish(t1, { temperature: 26 });
      await stack.startCloud();
      await until('backlog delivered', async () => (await allPoints(stack, 'telemetry', `"device" = 'e2e-hot-1' AND time >= ${t1}ms`)).length === 1, 30_000);
      expect(await (await fetch(`${stack.cloudUrl}/api/v1/alerts?state=all`)).json()).toMatchObject({ alerts: [{ rule: 'hot', state: 'resolved' }] });
      // A new incident after the restart: fires once more (a new alert id).
      for (const [i, v] of [35, 35, 35, 20].entries()) await device.publish(t1 + (i + 1) * 1500, { temperature: v });
    } finally {
      await device.close();
    }
    await until('second incident delivered', () => hook.received.length >= 4, 30_000);
    await until('outbox drained', outboxEmpty);
    expect(hook.received.map((h) => h.body.state)).toEqual(['firing', 'resolved', 'firing', 'resolved']);
    expect(hook.received[2].body.id).not.toBe(hook.received[0].body.id);
    expect(new Set(hook.received.map((h) => h.headers['idempotency-key'])).size).toBe(4);
  });
});

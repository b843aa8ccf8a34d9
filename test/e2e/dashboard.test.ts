/**
 * The dashboard in headless Chromium (playwright-core, Debian's /usr/bin/chromium) against the whole
 * stack: simulated devices (devices-sim) → gateway process → cloud process (--rules) → influxd.
 * The page lists the devices, charts their metrics, shows the firing alert, and updates live over
 * the event stream. A screenshot goes to test-artifacts/dashboard.png.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../deploy/processes.js';
import { runSim } from '../../devices-sim/sim.js';
import { ScriptedDevice, startAlertStack, type AlertStack } from '../support/cloud-stack.js';
import { until } from '../support/tmp.js';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let stack: AlertStack;
let browser: Browser | undefined;

beforeAll(async () => {
  stack = await startAlertStack({
    rules: `
rules:
  - id: greenhouse-warm
    metric: temperature
    devices: "dash-0001"
    above: 19
    severity: critical
    message: "{device}: temperature {value} °C above {threshold} °C"
  - id: humid
    metric: humidity
    devices: "dash-*"
    above: 95
    severity: warning
`,
  });
  // Three devices, 60 readings each, with event times spread over the last ten minutes.
  const devices = 3;
  const count = 60;
  const start = Date.now() - 10 * 60_000;
  let k = 0;
  const result = await runSim(
    { url: stack.mqttUrl, devices, rate: 50, count, qos: 1, format: 'json', prefix: 'dash', seed: 11 },
    { now: () => start + Math.floor((k++ * 10 * 60_000) / (devices * count)) },
  );
  expect(result.acked).toBe(devices * count);
  await until('the firing alert', async () => {
    const body: any = await (await fetch(`${stack.cloudUrl}/api/v1/alerts?state=firing`)).json();
    return body.alerts.some((a: any) => a.rule === 'greenhouse-warm');
  });
});

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

describe('dashboard', () => {
  it('lists the devices, charts their metrics, shows the firing alert, updates live; screenshot', async () => {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    const page = await browser.newPage({ viewport: { width: 1360, height: 980 } });
    const problems: string[] = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    page.on('pageerror', (e) => problems.push(e.message));

    await page.goto(stack.cloudUrl, { waitUntil: 'domcontentloaded' });
    await page.waitForFunction(() => document.querySelectorAll('#devices tbody tr[data-device]').length === 3);
    expect(await page.$$eval('#devices tbody tr[data-device]', (rows) => rows.map((r) => (r as HTMLElement).dataset.device))).toEqual(['dash-0001', 'dash-0002', 'dash-0003']);
    await page.waitForSelector('#devices tr[data-device="dash-0001"][data-status="alarm"]');
    expect(await page.textContent('#devices tr[data-device="dash-0002"] td.values')).toMatch(/humidity [\d.]+ · temperature [\d.]+/);

    // Alerts panel: the firing alert with its message; the header counts it.
    const alert = await page.waitForSelector('#alerts li.alert.firing[data-rule="greenhouse-warm"][data-device="dash-0001"]');
    expect(await alert.textContent()).toMatch(/critical.*greenhouse-warm · dash-0001.*dash-0001: temperature [\d.]+ °C above 19 °C/);
    expect(await page.textContent('#count-firing')).toBe('1 firing');

    // Charts: one per metric, the last 15 minutes, points from all three devices.
    await page.click('#range button[data-range="900000"]');
    await page.waitForFunction(() => Number(document.querySelector('.chart-card[data-metric="temperature"] svg')?.getAttribute('data-points') ?? 0) > 100);
    const metrics = await page.$$eval('.chart-card', (cards) => cards.map((c) => (c as HTMLElement).dataset.metric));
    expect(metrics).toEqual(['humidity', 'temperature', 'door_open']);
    expect(await page.$$eval('.chart-card[data-metric="temperature"] path.series', (p) => p.length)).toBe(3);
    expect(await page.$$eval('.chart-card[data-metric="temperature"] .threshold', (t) => t.length)).toBe(1);

    // Live: a new device appears through the event stream, without a reload.
    await page.waitForSelector('#conn[data-state="live"]');
    const device = await ScriptedDevice.connect(stack.mqttUrl, 'dash-live');
    try {
      await device.publish(Date.now(), { temperature: 21.5, humidity: 44 });
    } finally {
      await device.close();
    }
    await page.waitForSelector('#devices tr[data-device="dash-live"][data-status="online"]', { timeout: 20_000 });
    expect(await page.textContent('#count-devices')).toBe('4 devices');

    await mkdir(join(ROOT, 'test-artifacts'), { recursive: true });
    await page.screenshot({ path: join(ROOT, 'test-artifacts', 'dashboard.png'), fullPage: true });
    expect(problems).toEqual([]);
  });

  it('serves only its own files, with a content security policy', async () => {
    const res = await fetch(`${stack.cloudUrl}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect((await fetch(`${stack.cloudUrl}/dashboard/../cloud.sample.yaml`)).status).toBe(404);
    expect((await fetch(`${stack.cloudUrl}/dashboard/app.js`)).headers.get('content-type')).toMatch(/^text\/javascript/);
  });
});

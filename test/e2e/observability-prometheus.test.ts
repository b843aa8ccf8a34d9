/**
 * Observability as an operator gets it: a real Prometheus (Debian `prometheus`) scrapes the gateway's
 * and the cloud's /metrics every second; PromQL over its HTTP API sees the exact counts of a known
 * load. Also: health endpoints, JSON logs with levels, and no secret in any log line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSim } from '../../devices-sim/sim.js';
import { startPrometheus, type PrometheusHandle } from '../support/deploy-prometheus.js';
import { startStack, type Stack } from '../support/stack.js';
import { until } from '../support/tmp.js';

const DEVICES = 5;
const PER_DEVICE = 40;
const N = DEVICES * PER_DEVICE;

let stack: Stack;
let prom: PrometheusHandle | undefined;

beforeAll(async () => {
  stack = await startStack({ gatewayId: 'gw-obs' });
});

afterAll(async () => {
  await prom?.stop();
  await stack?.stop();
});

async function scrape(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('Prometheus scrapes the gateway and the cloud', () => {
  it(`PromQL sees exactly ${N} readings received, committed, forwarded, acked and written`, async () => {
    let clock = Date.now();
    const r = await runSim(
      { url: stack.mqttUrl, devices: DEVICES, rate: 100, qos: 1, format: 'json', count: PER_DEVICE, prefix: 'obs', seed: 3 },
      { now: () => ++clock },
    );
    expect(r.acked).toBe(N);
    // The gateway has handed everything to the cloud before Prometheus looks.
    await until('every reading acknowledged by the cloud', async () => sample(await scrape(stack.gatewayHttp), 'sluice_gateway_acked_total') === N, 30_000, 50);

    const gw = new URL(stack.gatewayHttp).host;
    const cloud = new URL(stack.cloudUrl).host;
    prom = await startPrometheus({ 'sluice-gateway': [gw], 'sluice-cloud': [cloud] });
    const p = prom;
    const one = async (q: string) => {
      const res = await p.query(q);
      return res.length === 1 ? res[0].value : undefined;
    };
    await until('Prometheus to scrape sluice_gateway_committed_total', async () => (await one('sluice_gateway_committed_total')) === N, 30_000, 200);
    await until('Prometheus to scrape the cloud', async () => (await one('sluice_cloud_points_written_total{measurement="telemetry"}')) === N, 30_000, 200);

    const res = await p.query('sluice_gateway_committed_total');
    expect(res).toEqual([{ metric: expect.objectContaining({ job: 'sluice-gateway', instance: gw }), value: N }]);
    expect(await one('sluice_gateway_received_total')).toBe(N);
    expect(await one('sluice_gateway_forwarded_total')).toBe(N);
    expect(await one('sluice_gateway_acked_total')).toBe(N);
    expect(await one('sluice_gateway_backlog_records')).toBe(0);
    expect(await one('sluice_gateway_backlog_bytes')).toBe(0);
    expect(await one('sluice_gateway_dropped_total{reason="evicted_quota"}')).toBe(0);
    expect(await one('sluice_gateway_quarantined_total')).toBe(0);
    expect(await one('sluice_gateway_clock_synced')).toBe(1);
    expect(await one('sluice_gateway_process_write_bytes')).toBeGreaterThanOrEqual(0);
    expect(await one('sum(sluice_cloud_batches_total{result="ok"})')).toBeGreaterThan(0);
    expect(await one('sluice_cloud_influx_write_seconds_count')).toBeGreaterThan(0);
    expect((await p.query('up')).map((s) => [s.metric.job, s.value]).sort()).toEqual([
      ['sluice-cloud', 1],
      ['sluice-gateway', 1],
    ]);

    // Everything the issue lists is exported by the gateway, with HELP and TYPE lines.
    const text = await scrape(stack.gatewayHttp);
    for (const name of [
      'sluice_gateway_received_total',
      'sluice_gateway_committed_total',
      'sluice_gateway_forwarded_total',
      'sluice_gateway_acked_total',
      'sluice_gateway_dropped_total',
      'sluice_gateway_quarantined_total',
      'sluice_gateway_retries_total',
      'sluice_gateway_backlog_records',
      'sluice_gateway_backlog_bytes',
      'sluice_gateway_oldest_unacked_age_seconds',
      'sluice_gateway_connected_clients',
      'sluice_gateway_process_write_bytes',
    ]) {
      expect(text, name).toMatch(new RegExp(`^# TYPE ${name.replace(/_total$/, '')}(_total)? (counter|gauge)$`, 'm'));
    }
    expect(await scrape(stack.cloudUrl)).toMatch(/^# TYPE sluice_cloud_influx_write_seconds histogram$/m);
  });

  it('health endpoints answer; logs are JSON lines with levels and carry no token', async () => {
    for (const path of ['/healthz', '/readyz']) {
      expect((await fetch(`${stack.gatewayHttp}${path}`)).status, `gateway ${path}`).toBe(200);
      expect((await fetch(`${stack.cloudUrl}${path}`)).status, `cloud ${path}`).toBe(200);
    }
    for (const [name, proc] of [['gateway', stack.gateway], ['cloud', stack.cloud]] as const) {
      const lines = proc.output().split('\n').filter((l) => l.trim().startsWith('{'));
      expect(lines.length, `${name} log lines`).toBeGreaterThan(0);
      for (const l of lines) expect(typeof JSON.parse(l).level, `${name}: ${l}`).toBe('number');
      expect(proc.output(), `${name} logs`).not.toContain(stack.token);
    }
  });
});

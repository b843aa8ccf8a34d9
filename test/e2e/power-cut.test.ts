/**
 * A power cut under `sync: never`: the last commits, forwarded and acknowledged by the cloud, are
 * lost from the gateway's log together with its sequence counter. New readings then take those
 * sequence numbers again; the cloud must not take them for replays.
 *
 * The power cut is emulated (a test cannot cut the machine's power): the gateway process is
 * SIGKILLed, then LevelDB's write-ahead log is cut back to the length it had before the lost
 * readings were written, which is what a power cut leaves of writes that were never fsynced.
 * Everything else is real: the gateway and cloud processes, influxd, MQTT over a socket.
 */
import { readdir, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { allPoints, startStack, type Stack } from '../support/stack.js';
import { until } from '../support/tmp.js';

let stack: Stack | undefined;

afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

/** The write-ahead log LevelDB is writing: the highest-numbered .log file of the gateway's log. */
async function currentWal(dir: string): Promise<string> {
  const logs = (await readdir(dir)).filter((f) => /^\d+\.log$/.test(f)).sort();
  if (logs.length === 0) throw new Error(`no LevelDB write-ahead log in ${dir}`);
  return join(dir, logs[logs.length - 1]);
}

async function status(s: Stack): Promise<any> {
  return (await fetch(`${s.gatewayHttp}/status`)).json();
}

/** `n` QoS 1 readings of device `dev`, each acknowledged, then wait until the cloud acknowledged them all. */
async function publish(s: Stack, dev: string, n: number, base: number): Promise<void> {
  const c = await mqtt.connectAsync(s.mqttUrl, { clientId: dev });
  for (let i = 1; i <= n; i++) await c.publishAsync(`devices/${dev}/telemetry`, JSON.stringify({ ts: base + i, values: { v: i } }), { qos: 1 });
  await c.endAsync();
  await until(`${dev}: every reading acknowledged by the cloud`, async () => (await status(s)).log.backlogRecords === 0, 30_000);
}

describe('power cut under sync: never', () => {
  it('readings that reuse the sequence numbers of lost, already forwarded ones still reach InfluxDB (the log goes on as a new incarnation)', async () => {
    stack = await startStack({ gatewayId: 'gw-cut', gatewayArgs: ['--sync', 'never', '--windows', 'off'] });
    const s = stack;
    const wal = join(s.dir, 'gateway', 'log');
    const base = Date.now() - 600_000;
    await publish(s, 'before', 50, base);
    const walFile = await currentWal(wal);
    const kept = (await stat(walFile)).size;
    // Forwarded and acknowledged by the cloud, then lost with the power.
    await publish(s, 'lost', 50, base + 1000);
    expect((await stat(walFile)).size).toBeGreaterThan(kept);
    const inc = (await status(s)).incarnation ?? (await status(s)).log?.incarnation;
    await s.gateway.stop('SIGKILL');
    await truncate(walFile, kept);

    await s.startGateway();
    const after = await status(s);
    // The counter went back with the lost commits: seqs 51-100 will be used again.
    expect(after.log.nextSeq).toBe(51);
    expect(after.log.newIncarnations).toBe(1);
    if (inc !== undefined) expect(after.incarnation ?? after.log?.incarnation).not.toBe(inc);
    await publish(s, 'after', 50, base + 2000);

    const count = async (dev: string) => (await allPoints(s, 'telemetry', `"device" = '${dev}'`)).length;
    await until('the new readings in InfluxDB', async () => (await count('after')) === 50, 30_000);
    expect(await count('before')).toBe(50);
    expect(await count('lost')).toBe(50);
    expect(await count('after')).toBe(50);
    expect(s.gatewayLog()).toContain('goes on as a new incarnation');
  });

  it('a clean stop keeps the incarnation', async () => {
    stack = await startStack({ gatewayId: 'gw-clean', gatewayArgs: ['--sync', 'never', '--windows', 'off'] });
    const s = stack;
    await publish(s, 'c1', 10, Date.now() - 600_000);
    await s.gateway.stop('SIGTERM');
    await s.startGateway();
    expect((await status(s)).log.newIncarnations).toBe(0);
    expect(s.gatewayLog()).not.toContain('goes on as a new incarnation');
  });
});

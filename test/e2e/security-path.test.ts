/**
 * Authentication and ACL on the whole path with real parts: a device registry, the gateway process
 * without --allow-anonymous, the cloud process holding only the scrypt hash of the gateway token,
 * a private influxd, and real clients (mqtt.js and mosquitto_pub). Nothing from a refused CONNECT
 * or PUBLISH may reach InfluxDB, and no secret may appear in either process's logs.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addEntry } from '../../gateway/registry.js';
import { allPoints } from '../support/stack.js';
import { startSecureStack, type SecureStack } from '../support/security-stack.js';
import { until } from '../support/tmp.js';

const exec = promisify(execFile);
let stack: SecureStack;
const secrets: Record<string, string> = {};
const clients: MqttClient[] = [];
const WRONG_PASSWORD = 'wrong-password-4f1c9e';

beforeAll(async () => {
  stack = await startSecureStack({
    hashedToken: true,
    prepare: async (dir) => {
      const reg = join(dir, 'devices.yaml');
      for (const id of ['sec-a', 'sec-b', 'mosq-sec']) secrets[id] = await addEntry(reg, id);
      secrets.ops = await addEntry(reg, 'ops', { account: true, subscribe: ['devices/#'] });
      return { gatewayArgs: ['--registry', reg] };
    },
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  await stack?.stop();
});

async function device(id: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(stack.mqttUrl, { username: id, password: secrets[id], clientId: `${id}-c`, reconnectPeriod: 0 });
  clients.push(c);
  return c;
}

async function connack(opts: mqtt.IClientOptions): Promise<number> {
  try {
    const c = await mqtt.connectAsync(stack.mqttUrl, { reconnectPeriod: 0, ...opts });
    await c.endAsync(true);
    return 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
}

function mosquittoPub(args: string[]): Promise<{ code: number; stderr: string }> {
  const { port } = new URL(stack.mqttUrl);
  return exec('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-q', '1', ...args]).then(
    (r) => ({ code: 0, stderr: r.stderr }),
    (e) => ({ code: typeof e.code === 'number' ? e.code : -1, stderr: String(e.stderr) }),
  );
}

const points = (device: string) => allPoints(stack, 'telemetry', `"device" = '${device}'`);

describe('secured path: registry → gateway → cloud (hashed token) → InfluxDB', () => {
  it('good credentials get in with mqtt.js and mosquitto_pub, and their readings arrive', async () => {
    const a = await device('sec-a');
    await a.publishAsync('devices/sec-a/telemetry', JSON.stringify({ ts: 1_732_300_000_001, values: { temperature: 1.5 } }), { qos: 1 });
    const r = await mosquittoPub(['-u', 'mosq-sec', '-P', secrets['mosq-sec'], '-t', 'devices/mosq-sec/telemetry', '-m', JSON.stringify({ ts: 1_732_300_000_002, values: { temperature: 2.5 } })]);
    expect(r.code).toBe(0);
    await until('both readings in InfluxDB', async () => (await points('sec-a')).length === 1 && (await points('mosq-sec')).length === 1);
  });

  it('wrong, missing and anonymous credentials are refused with CONNACK 5 by both clients', async () => {
    expect(await connack({ username: 'sec-a', password: WRONG_PASSWORD })).toBe(5);
    expect(await connack({ username: 'ghost', password: WRONG_PASSWORD })).toBe(5);
    expect(await connack({})).toBe(5);
    const bad = await mosquittoPub(['-u', 'mosq-sec', '-P', WRONG_PASSWORD, '-t', 'devices/mosq-sec/telemetry', '-m', JSON.stringify({ ts: 1_732_300_000_003, values: { temperature: 99 } })]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not authori[sz]ed/i);
    const anon = await mosquittoPub(['-t', 'devices/mosq-sec/telemetry', '-m', JSON.stringify({ ts: 1_732_300_000_004, values: { temperature: 98 } })]);
    expect(anon.code).not.toBe(0);
    expect(anon.stderr).toMatch(/not authori[sz]ed/i);
  });

  it('cross-device publishes are acknowledged but never stored; denied subscriptions get 0x80', async () => {
    const a = await device('sec-a');
    const b = await device('sec-b');
    // Refused publishes (mqtt.js and mosquitto_pub), then one allowed reading per device as a
    // sentinel: the log is sequential, so once the sentinels are stored the refused ones would be too.
    await a.publishAsync('devices/sec-b/telemetry', JSON.stringify({ ts: 1_732_300_000_010, values: { temperature: -1 } }), { qos: 1 });
    const cross = await mosquittoPub(['-u', 'mosq-sec', '-P', secrets['mosq-sec'], '-t', 'devices/sec-b/telemetry', '-m', JSON.stringify({ ts: 1_732_300_000_011, values: { temperature: -2 } })]);
    expect(cross.code).toBe(0); // [MQTT-3.3.5-2] positive acknowledgement, dropped
    await a.publishAsync('devices/sec-a/telemetry', JSON.stringify({ ts: 1_732_300_000_020, values: { temperature: 3 } }), { qos: 1 });
    await b.publishAsync('devices/sec-b/telemetry', JSON.stringify({ ts: 1_732_300_000_021, values: { temperature: 4 } }), { qos: 1 });
    await until('sentinels stored', async () => (await points('sec-a')).length === 2 && (await points('sec-b')).length === 1);
    const bPoints = await points('sec-b');
    expect(bPoints.map((p) => p.temperature)).toEqual([4]);

    const granted = await b.subscribeAsync('devices/#', { qos: 1 }).then(
      (g) => g.map((x) => x.qos),
      (err) => err.packet.granted as number[],
    );
    expect(granted).toEqual([128]);
    const ops = await device('ops');
    expect((await ops.subscribeAsync('devices/#', { qos: 1 })).map((g) => g.qos)).toEqual([1]);

    const metrics = await (await fetch(`${stack.gatewayHttp}/metrics`)).text();
    expect(metrics).toMatch(/sluice_gateway_dropped_total\{reason="acl_denied"\} 2/);
    expect(metrics).toMatch(/sluice_gateway_refused_total\{reason="subscribe_denied"\} 1/);
    expect(metrics).toMatch(/sluice_gateway_refused_total\{reason="bad_password"\} \d/);
  });

  it('no token, secret or attempted password appears in the gateway or cloud logs', async () => {
    // A wrong bearer token at the cloud gets logged as a refusal, without the token.
    const wrongToken = 'not-the-token-7d2e';
    const res = await fetch(`${stack.cloudUrl}/api/v1/batches`, { method: 'POST', headers: { authorization: `Bearer ${wrongToken}`, 'content-type': 'application/cbor' }, body: new Uint8Array([0xa0]) });
    expect(res.status).toBe(401);
    await until('the refusal is logged', () => stack.cloudLog().includes('missing or unknown bearer token'));
    const logs = stack.gatewayLog() + stack.cloudLog();
    expect(logs).toContain('refused MQTT client');
    for (const secret of [stack.token, wrongToken, WRONG_PASSWORD, ...Object.values(secrets)]) expect(logs).not.toContain(secret);
  });
});

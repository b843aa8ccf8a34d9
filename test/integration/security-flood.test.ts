/**
 * Abuse of a real gateway process: 300 authenticated clients flood QoS 0 and are then reset (TCP
 * RST) all at once, while 60 more sockets connect and never send CONNECT or stop half-way through
 * one. The process must stay up, drop the silent sockets after its CONNECT timeout, and go on
 * ingesting from everyone else.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GATEWAY_READY, startSluice, type SluiceProcess } from '../../deploy/processes.js';
import { addEntry } from '../../gateway/registry.js';
import { ScriptedCloud } from '../support/scripted-cloud.js';
import { connectPacket, publishPacket } from '../support/security-stack.js';
import { tempDir, until } from '../support/tmp.js';

const FLOOD_CLIENTS = 300;
const FLOOD_DEVICES = 10;
const IDLE = 30;
const HALF = 30;

let dir: { path: string; remove(): Promise<void> };
let cloud: ScriptedCloud;
let gateway: SluiceProcess;
let mqttPort: number;
let http: string;
const secrets: Record<string, string> = {};
const sockets: Socket[] = [];

beforeAll(async () => {
  dir = await tempDir('sluice-flood-');
  cloud = new ScriptedCloud();
  await cloud.start();
  const reg = join(dir.path, 'devices.yaml');
  for (let i = 0; i < FLOOD_DEVICES; i++) secrets[`flood-${i}`] = await addEntry(reg, `flood-${i}`);
  secrets.probe = await addEntry(reg, 'probe');
  const cfg = join(dir.path, 'gateway.yaml');
  await writeFile(cfg, 'limits:\n  connectTimeout: 1s\n  maxConnections: 2000\n');
  gateway = await startSluice(
    ['gateway', '--config', cfg, '--id', 'gw-flood', '--mqtt', '127.0.0.1:0', '--http', '127.0.0.1:0', '--data', join(dir.path, 'data'), '--cloud', cloud.url,
      '--cloud-token', 't', '--registry', reg, '--sync', 'never', '--log-level', 'error'],
    GATEWAY_READY,
  );
  mqttPort = Number(new URL(gateway.match[2]).port);
  http = gateway.match[3];
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await gateway?.stop();
  await cloud?.stop();
  await dir?.remove();
});

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(mqttPort, '127.0.0.1', () => resolve(s));
    s.on('error', () => undefined);
    s.once('error', reject);
    sockets.push(s);
  });
}

const closed = (s: Socket) => (s.destroyed ? Promise.resolve() : new Promise<void>((r) => s.once('close', () => r())));

async function status(): Promise<any> {
  return (await fetch(`${http}/status`)).json();
}

describe('abuse of a gateway process', () => {
  it('300 flooding clients reset at once, silent and half-open sockets: the gateway stays up and keeps ingesting', async () => {
    const reading = (i: number) => JSON.stringify({ values: { temperature: i } });
    // Silent sockets and half a CONNECT (the length promises more than ever comes).
    const idle = await Promise.all(Array.from({ length: IDLE }, () => open()));
    const half = await Promise.all(Array.from({ length: HALF }, () => open()));
    for (const s of half) s.write(connectPacket({ clientId: 'half', clean: true, username: 'flood-0', password: secrets['flood-0'] }).subarray(0, 12));

    // The flood: connect (CONNACK 0), send 50 QoS 0 publishes in one write, then RST all together.
    const flooders = await Promise.all(
      Array.from({ length: FLOOD_CLIENTS }, async (_, i) => {
        const dev = `flood-${i % FLOOD_DEVICES}`;
        const s = await open();
        const ack = new Promise<Buffer>((resolve) => s.once('data', resolve));
        s.write(connectPacket({ clientId: `c${i}`, clean: true, username: dev, password: secrets[dev] }));
        const connack = await ack;
        expect([...connack.subarray(0, 4)]).toEqual([0x20, 0x02, 0x00, 0x00]);
        s.write(Buffer.concat(Array.from({ length: 50 }, (_, k) => publishPacket(`devices/${dev}/telemetry`, reading(k)))));
        return s;
      }),
    );
    for (const s of flooders) s.resetAndDestroy();

    // Silent and half-open sockets are dropped after the 1 s CONNECT timeout.
    const t0 = Date.now();
    await Promise.all([...idle, ...half].map(closed));
    expect(Date.now() - t0).toBeLessThan(10_000);

    expect(gateway.child.exitCode).toBeNull();
    expect((await fetch(`${http}/healthz`)).status).toBe(200);
    await until('all flood sockets released', async () => (await status()).broker.openSockets === 0, 20_000, 100);
    const st = await status();
    expect(st.broker.connected).toBe(0);
    expect(st.ingest.received + (st.broker.dropped.rate_limited ?? 0)).toBeGreaterThan(0);
    // scrypt once per device, not once per connection.
    expect(st.broker.authVerifications).toBeLessThanOrEqual(FLOOD_DEVICES * 2);

    // Everyone else is served: a fresh device publishes and its reading reaches the cloud.
    const probe = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { username: 'probe', password: secrets.probe, reconnectPeriod: 0 });
    await probe.publishAsync('devices/probe/telemetry', JSON.stringify({ ts: 1_732_900_000_000, values: { temperature: 42 } }), { qos: 1 });
    await probe.endAsync();
    await until('the probe reading at the cloud', () => [...cloud.records.values()].some((r) => r.dev === 'probe' && r.vals.temperature === 42), 20_000);
    expect(gateway.child.exitCode).toBeNull();
  });
});

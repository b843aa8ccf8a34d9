/**
 * MQTT over TLS on the in-process gateway with certificates made by openssl for this run: server
 * verification, passwords over TLS, client certificates (mTLS, device id = CN) in `optional` and
 * `require` mode, certificates from an untrusted CA, and mosquitto_pub over TLS.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Gateway } from '../../gateway/gateway.js';
import { addEntry } from '../../gateway/registry.js';
import type { ClientAuthMode } from '../../gateway/tls.js';
import { ScriptedCloud } from '../support/scripted-cloud.js';
import { makeCerts, type CertFiles } from '../support/security-certs.js';
import { tempDir, until } from '../support/tmp.js';

const exec = promisify(execFile);
let certDir: { path: string; remove(): Promise<void> };
let certs: CertFiles;
let registry: string;
let pwSecret: string;
let cloud: ScriptedCloud;
let dataDir: { path: string; remove(): Promise<void> };
let gw: Gateway | undefined;
const clients: MqttClient[] = [];

beforeAll(async () => {
  certDir = await tempDir('sluice-sec-tls-');
  certs = await makeCerts(certDir.path, ['tls-dev', 'unregistered-dev']);
  registry = join(certDir.path, 'devices.yaml');
  pwSecret = await addEntry(registry, 'pw-dev');
  await addEntry(registry, 'tls-dev');
});

afterAll(async () => {
  await certDir?.remove();
});

beforeEach(async () => {
  // One per test: the scripted cloud keeps one high-water mark, not one per gateway incarnation.
  cloud = new ScriptedCloud();
  await cloud.start();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await gw?.stop().catch(() => undefined);
  gw = undefined;
  await cloud.stop();
  await dataDir?.remove();
});

async function startGateway(clientAuth: ClientAuthMode): Promise<Gateway> {
  dataDir = await tempDir();
  gw = new Gateway({
    id: 'gw-tls',
    dataDir: dataDir.path,
    mqtt: { host: '127.0.0.1', port: 0 },
    cloud: { url: cloud.url, token: 't' },
    allowAnonymous: false,
    logger: pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' }),
    log: { sync: 'never' },
    forwarder: { minBackoffMs: 5, maxBackoffMs: 50, lingerMs: 2 },
    broker: { registryFile: registry, tls: { host: '127.0.0.1', port: 0, cert: certs.server.cert, key: certs.server.key, ca: certs.ca, clientAuth } },
  });
  await gw.start();
  expect(gw.broker.tlsUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
  return gw;
}

const ca = () => readFileSync(certs.ca);
const clientCert = (cn: string) => ({ cert: readFileSync(certs.clients[cn].cert), key: readFileSync(certs.clients[cn].key) });
const rogueCert = () => ({ cert: readFileSync(certs.rogue.cert), key: readFileSync(certs.rogue.key) });

/**
 * Connect over TLS; resolves the client, the CONNACK code, or 'tls' when the handshake failed or the
 * socket closed before a CONNACK (mqtt.js's connectAsync does not settle on a bare close).
 */
function tryConnect(opts: IClientOptions): Promise<MqttClient | number | 'tls'> {
  const c = mqtt.connect(gw!.broker.tlsUrl, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  clients.push(c);
  return new Promise((resolve) => {
    c.once('connect', () => resolve(c));
    c.once('error', (err) => {
      const code = (err as { code?: unknown }).code;
      resolve(typeof code === 'number' ? code : 'tls');
    });
    c.once('close', () => resolve('tls'));
  });
}

const reading = (n: number) => JSON.stringify({ ts: 1_732_400_000_000 + n, values: { temperature: n } });

describe('MQTT over TLS', () => {
  it('optional client auth: passwords over TLS, certificates as identity, untrusted certificates refused', async () => {
    await startGateway('optional');
    const before = cloud.records.size;

    // Password over TLS, server verified against the test CA.
    const pw = await tryConnect({ ca: ca(), username: 'pw-dev', password: pwSecret });
    expect(typeof pw).toBe('object');
    await (pw as MqttClient).publishAsync('devices/pw-dev/telemetry', reading(1), { qos: 1 });

    // A client that does not trust the gateway's CA does not connect.
    expect(await tryConnect({ username: 'pw-dev', password: pwSecret })).toBe('tls');

    // mTLS: the certificate is the credential, its CN the device id, with the device's ACL.
    const dev = await tryConnect({ ca: ca(), ...clientCert('tls-dev') });
    expect(typeof dev).toBe('object');
    await (dev as MqttClient).publishAsync('devices/tls-dev/telemetry', reading(2), { qos: 1 });
    await (dev as MqttClient).publishAsync('devices/pw-dev/telemetry', reading(3), { qos: 1 });
    await until('two readings forwarded', () => cloud.records.size === before + 2);
    expect([...cloud.records.values()].slice(-2).map((r) => r.dev).sort()).toEqual(['pw-dev', 'tls-dev']);
    expect(gw!.broker.stats.dropped.acl_denied).toBe(1);

    // A username that is not the certificate's CN is refused.
    expect(await tryConnect({ ca: ca(), ...clientCert('tls-dev'), username: 'pw-dev', password: pwSecret })).toBe(5);
    // A valid certificate of an id not in the registry (revoked) is refused.
    expect(await tryConnect({ ca: ca(), ...clientCert('unregistered-dev') })).toBe(5);
    // A certificate from a CA the gateway does not trust: CONNACK 5 after the handshake.
    expect(await tryConnect({ ca: ca(), ...rogueCert() })).toBe(5);
    expect(gw!.broker.stats.refused).toMatchObject({ cert_username_mismatch: 1, revoked_certificate: 1, tls_untrusted_certificate: 1 });
  });

  it('required client auth: no or untrusted certificate fails the handshake; mosquitto_pub with a certificate gets in', async () => {
    await startGateway('require');
    expect(await tryConnect({ ca: ca(), username: 'pw-dev', password: pwSecret })).toBe('tls');
    expect(await tryConnect({ ca: ca(), ...rogueCert() })).toBe('tls');
    await until('handshake failures counted', () => (gw!.broker.stats.refused.tls_handshake ?? 0) >= 2);
    const ok = await tryConnect({ ca: ca(), ...clientCert('tls-dev') });
    expect(typeof ok).toBe('object');

    const before = cloud.records.size;
    const port = new URL(gw!.broker.tlsUrl.replace('mqtts:', 'http:')).port;
    const base = ['-h', '127.0.0.1', '-p', port, '-q', '1', '--cafile', certs.ca, '-t', 'devices/tls-dev/telemetry', '-m', reading(10)];
    await exec('mosquitto_pub', [...base, '--cert', certs.clients['tls-dev'].cert, '--key', certs.clients['tls-dev'].key]);
    await until('mosquitto reading forwarded', () => cloud.records.size === before + 1);
    const rogue = await exec('mosquitto_pub', [...base, '--cert', certs.rogue.cert, '--key', certs.rogue.key]).then(
      () => 0,
      (e) => e.code as number,
    );
    expect(rogue).not.toBe(0);
    // The plain listener keeps working next to the TLS one.
    const plain = await mqtt.connectAsync(gw!.mqttUrl, { username: 'pw-dev', password: pwSecret, reconnectPeriod: 0 });
    clients.push(plain);
    await plain.publishAsync('devices/pw-dev/telemetry', reading(11), { qos: 1 });
    await until('plain reading forwarded', () => cloud.records.size === before + 2);
  });
});

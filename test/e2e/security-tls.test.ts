/**
 * TLS end to end with real processes and certificates made by openssl for this run:
 * device ──MQTTS + client certificate──▶ gateway ──HTTPS, cloud verified with --cloud-ca──▶ cloud
 * (--tls-cert/--tls-key) ──▶ influxd. A gateway that does not trust the cloud's CA delivers nothing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway } from '../../gateway/gateway.js';
import { addEntry } from '../../gateway/registry.js';
import { makeCerts, type CertFiles } from '../support/security-certs.js';
import { startSecureStack, type SecureStack } from '../support/security-stack.js';
import { allPoints } from '../support/stack.js';
import { tempDir, until } from '../support/tmp.js';

let stack: SecureStack;
let certs: CertFiles;
const clients: MqttClient[] = [];

beforeAll(async () => {
  stack = await startSecureStack({
    prepare: async (dir) => {
      certs = await makeCerts(dir, ['tls-e2e-dev']);
      const reg = join(dir, 'devices.yaml');
      await addEntry(reg, 'tls-e2e-dev');
      return {
        cloudArgs: ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key],
        gatewayArgs: ['--registry', reg, '--cloud-ca', certs.ca, '--mqtts', '127.0.0.1:0', '--tls-cert', certs.server.cert, '--tls-key', certs.server.key,
          '--tls-ca', certs.ca, '--tls-client-auth', 'require'],
      };
    },
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  await stack?.stop();
});

describe('TLS on both hops', () => {
  it('an mTLS device reading travels over MQTTS and HTTPS (custom CA) into InfluxDB', async () => {
    expect(stack.cloudUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(stack.mqttsUrl).toMatch(/^mqtts:\/\//);
    const c = await mqtt.connectAsync(stack.mqttsUrl, {
      ca: readFileSync(certs.ca),
      cert: readFileSync(certs.clients['tls-e2e-dev'].cert),
      key: readFileSync(certs.clients['tls-e2e-dev'].key),
      reconnectPeriod: 0,
    });
    clients.push(c);
    await c.publishAsync('devices/tls-e2e-dev/telemetry', JSON.stringify({ ts: 1_732_500_000_000, values: { temperature: 7.25 } }), { qos: 1 });
    const pts = await until('the reading in InfluxDB', async () => {
      const p = await allPoints(stack, 'telemetry', `"device" = 'tls-e2e-dev'`);
      return p.length === 1 ? p : undefined;
    });
    expect(pts[0]).toMatchObject({ time: 1_732_500_000_000, temperature: 7.25, gateway: stack.gatewayId });
    // The query API is served over HTTPS too.
    const res = await fetch(`${stack.cloudUrl}/healthz`).catch((err) => err as Error);
    expect(res).toBeInstanceOf(Error); // Node's fetch does not trust the private CA: as it should be
  });

  it('a gateway without the cloud CA refuses the cloud certificate and delivers nothing', async () => {
    const dir = await tempDir();
    const gw = new Gateway({
      id: stack.gatewayId,
      dataDir: dir.path,
      mqtt: { host: '127.0.0.1', port: 0 },
      cloud: { url: stack.cloudUrl, token: stack.token },
      allowAnonymous: true,
      logger: pino({ level: 'silent' }),
      log: { sync: 'never' },
      forwarder: { minBackoffMs: 5, maxBackoffMs: 50, lingerMs: 2 },
    });
    try {
      await gw.start();
      const c = await mqtt.connectAsync(gw.mqttUrl, { reconnectPeriod: 0 });
      await c.publishAsync('devices/no-ca-dev/telemetry', JSON.stringify({ ts: 1_732_500_000_100, values: { temperature: 1 } }), { qos: 1 });
      await c.endAsync(true);
      await until('a certificate error', () => gw.forwarder.stats.lastError?.match(/certificate/i));
      expect(gw.forwarder.stats.batchesAcked).toBe(0);
      expect(gw.log.stats.backlogRecords).toBe(1);
    } finally {
      await gw.stop();
      await dir.remove();
    }
  });
});

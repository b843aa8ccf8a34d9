/**
 * Fuzzed payloads through a running gateway over real MQTT: every generated payload is published
 * (QoS 1) and the gateway must treat each exactly as the decoder does (accepted readings are
 * committed and forwarded, refused ones counted), never crash or stall, and a valid reading sent
 * afterwards still arrives at the cloud.
 */
import fc from 'fast-check';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway } from '../../gateway/gateway.js';
import { decodePayload } from '../../protocols/payload.js';
import { ScriptedCloud } from '../support/scripted-cloud.js';
import { PAYLOAD_CORPUS, payloadBytes } from '../support/security-fuzz.js';
import { tempDir, until } from '../support/tmp.js';

let cloud: ScriptedCloud;
let dir: { path: string; remove(): Promise<void> };
let gw: Gateway;
let client: MqttClient;

beforeAll(async () => {
  cloud = new ScriptedCloud();
  await cloud.start();
  dir = await tempDir();
  gw = new Gateway({
    id: 'gw-fuzz',
    dataDir: dir.path,
    mqtt: { host: '127.0.0.1', port: 0 },
    cloud: { url: cloud.url, token: 't' },
    allowAnonymous: true,
    logger: pino({ level: 'silent' }),
    log: { sync: 'never' },
    forwarder: { minBackoffMs: 5, maxBackoffMs: 50, lingerMs: 5 },
    broker: { publishRate: 0 },
  });
  await gw.start();
  client = await mqtt.connectAsync(gw.mqttUrl, { clientId: 'fuzzer', reconnectPeriod: 0 });
});

afterAll(async () => {
  await client?.endAsync(true).catch(() => undefined);
  await gw?.stop();
  await cloud?.stop();
  await dir?.remove();
});

describe('fuzzed payloads through the gateway', () => {
  it('2,500 generated payloads and the corpus: the gateway agrees with the decoder on every one, and keeps serving', async () => {
    const payloads = [...fc.sample(payloadBytes, { numRuns: 2500, seed: 0xf00d }), ...PAYLOAD_CORPUS.map(([, b]) => b).filter((b) => b.length < 200_000)];
    let accepted = 0;
    for (const p of payloads) {
      try {
        decodePayload(p);
        accepted++;
      } catch {
        // refused: counted by the gateway below
      }
    }
    // Pipelined QoS 1 publishes, in windows of 100, all acknowledged.
    for (let i = 0; i < payloads.length; i += 100) {
      await Promise.all(payloads.slice(i, i + 100).map((p) => client.publishAsync('devices/fz-dev/telemetry', p, { qos: 1 })));
    }
    const dropped = () => Object.entries(gw.ingest.stats.dropped).filter(([r]) => r !== 'duplicate').reduce((a, [, v]) => a + v, 0);
    await until('every payload accounted for', () => gw.ingest.stats.committed + (gw.ingest.stats.dropped.duplicate ?? 0) === accepted && dropped() === payloads.length - accepted);
    expect(gw.ingest.stats.received).toBe(payloads.length);
    expect(accepted).toBeGreaterThan(10);
    await until('committed readings forwarded', () => cloud.records.size === gw.ingest.stats.committed);

    // A valid reading afterwards arrives.
    await client.publishAsync('devices/fz-after/telemetry', JSON.stringify({ ts: 1_732_800_000_000, values: { temperature: 12.5 } }), { qos: 1 });
    await until('the valid reading arrives', () => [...cloud.records.values()].some((r) => r.dev === 'fz-after' && r.vals.temperature === 12.5));
  });
});

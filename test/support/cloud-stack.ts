/**
 * The whole stack for alert and dashboard end-to-end tests: like startStack() (test/support/stack.ts)
 * — a private influxd, `sluice cloud` and `sluice gateway` as real processes — but the cloud gets
 * `--rules FILE` (written from the given YAML) and the cloud can be restarted on the same port.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { startInfluxd } from '../../deploy/influxd.js';
import { CLOUD_READY, GATEWAY_READY, startSluice } from '../../deploy/processes.js';
import { encodePayload } from '../../protocols/payload.js';
import { telemetryTopic } from '../../protocols/topic.js';
import type { Stack } from './stack.js';
import { tempDir } from './tmp.js';

export interface AlertStack extends Stack {
  rulesFile: string;
}

export async function startAlertStack(opts: { rules: string; gatewayId?: string; db?: string; gatewayArgs?: string[] }): Promise<AlertStack> {
  const tmp = await tempDir('sluice-e2e-alerts-');
  const rulesFile = join(tmp.path, 'rules.yaml');
  await writeFile(rulesFile, opts.rules);
  const influx = await startInfluxd({ dataDir: join(tmp.path, 'influxdb') });
  const db = opts.db ?? 'sluice';
  const gatewayId = opts.gatewayId ?? 'gw-e2e';
  const token = 'tok-' + Math.random().toString(36).slice(2);
  const cloudArgs = (listen: string) => [
    'cloud', '--listen', listen, '--data', join(tmp.path, 'cloud'), '--gateway-token', `${gatewayId}=${token}`,
    '--influx', influx.url, '--influx-api', '1', '--influx-db', db, '--rules', rulesFile,
  ];
  let cloud;
  try {
    cloud = await startSluice(cloudArgs('127.0.0.1:0'), CLOUD_READY);
  } catch (err) {
    await influx.stop();
    await tmp.remove();
    throw err;
  }
  const cloudUrl = cloud.match[1];
  const stack: AlertStack = {
    influx,
    db,
    cloud,
    cloudUrl,
    gateway: undefined as unknown as Stack['gateway'],
    gatewayId,
    token,
    mqttUrl: '',
    gatewayHttp: '',
    dir: tmp.path,
    rulesFile,
    async stopCloud() {
      await stack.cloud.stop('SIGTERM');
    },
    async startCloud() {
      stack.cloud = await startSluice(cloudArgs(`127.0.0.1:${new URL(cloudUrl).port}`), CLOUD_READY);
    },
    async stopInflux() {
      await stack.influx.stop();
    },
    async startInflux() {
      stack.influx = await startInfluxd({ dataDir: join(tmp.path, 'influxdb'), port: influx.port });
    },
    async startGateway(g = {}) {
      const proc = await startSluice(
        [
          'gateway', '--id', gatewayId, '--mqtt', `127.0.0.1:${g.mqttPort ?? 0}`, '--http', '127.0.0.1:0', '--data', join(tmp.path, 'gateway'),
          '--cloud', cloudUrl, '--cloud-token', token, '--allow-anonymous', ...(opts.gatewayArgs ?? []), ...(g.extraArgs ?? []),
        ],
        GATEWAY_READY,
      );
      stack.gateway = proc;
      stack.mqttUrl = proc.match[2];
      stack.gatewayHttp = proc.match[3];
      return proc;
    },
    async stop() {
      await stack.gateway?.stop('SIGTERM').catch(() => undefined);
      await stack.cloud.stop('SIGTERM').catch(() => undefined);
      await stack.influx.stop().catch(() => undefined);
      await tmp.remove();
    },
  };
  try {
    await stack.startGateway();
  } catch (err) {
    await stack.stop();
    throw err;
  }
  return stack;
}

/**
 * A scripted device: one MQTT connection publishing payload v1 readings with the values and event
 * times the test chooses (QoS 1: each publish resolves on PUBACK, i.e. once the gateway committed it).
 */
export class ScriptedDevice {
  private seq = 0;
  private constructor(
    readonly id: string,
    private readonly client: MqttClient,
  ) {}

  static async connect(url: string, id: string): Promise<ScriptedDevice> {
    const client = await mqtt.connectAsync(url, { clientId: id, protocolVersion: 4, clean: true, reconnectPeriod: 500 });
    return new ScriptedDevice(id, client);
  }

  async publish(ts: number, values: Record<string, number | boolean>): Promise<void> {
    await this.client.publishAsync(telemetryTopic(this.id), encodePayload({ ts, values, seq: ++this.seq }, 'json'), { qos: 1 });
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

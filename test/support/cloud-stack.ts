/**
 * The whole stack for alert and dashboard end-to-end tests: like startStack() (test/support/stack.ts)
 * — a private influxd, `sluice cloud` and `sluice gateway` as real processes — but the cloud gets
 * `--rules FILE` (written from the given YAML) and the cloud can be restarted on the same port.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { encodePayload } from '../../protocols/payload.js';
import { telemetryTopic } from '../../protocols/topic.js';
import { startStack, type Stack } from './stack.js';

export interface AlertStack extends Stack {
  rulesFile: string;
}

export async function startAlertStack(opts: { rules: string; gatewayId?: string; db?: string; gatewayArgs?: string[] }): Promise<AlertStack> {
  let rulesFile = '';
  const stack = await startStack({
    gatewayId: opts.gatewayId,
    db: opts.db,
    gatewayArgs: opts.gatewayArgs,
    tmpPrefix: 'sluice-e2e-alerts-',
    async prepare(dir) {
      rulesFile = join(dir, 'rules.yaml');
      await writeFile(rulesFile, opts.rules);
      return { cloudArgs: ['--rules', rulesFile] };
    },
  });
  return Object.assign(stack, { rulesFile });
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

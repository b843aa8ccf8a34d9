/**
 * Where alert notifications go: webhook (HTTP POST), MQTT publish (mqtt.js), log (pino), and the
 * InfluxDB `alerts` history. Each is a Deliverer the outbox (outbox.ts) calls with entries in order.
 *
 * Contract of every Deliverer:
 * - `deliver(entries)` resolves only when the destination accepted every entry; otherwise it throws a
 *   DeliveryError saying whether a retry can help (and after how long, when the destination said so).
 *   No retries inside: the outbox owns them.
 * - Called by one outbox loop at a time per target, never concurrently for one target.
 * - Webhook: JSON body (notificationBody), header `Idempotency-Key: <alert id>:<state>` (the same on
 *   every retry and after a restart, so a receiver can drop duplicates); 2xx accepted; 408, 429, 5xx and
 *   network errors retryable (Retry-After honoured); other 4xx refused (dropped, counted).
 * - MQTT: QoS 1 (default) publish of the same JSON to the topic template; accepted on PUBACK.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { isSluiceError } from '../protocols/errors.js';
import type { Transition } from './alert-engine.js';
import type { NotifierSpec } from './alert-rules.js';
import type { OutboxEntry } from './alert-store.js';
import { parseRetryAfter, type PointSink } from './influx-common.js';
import { toLine } from './line-protocol.js';

export const ALERTS_MEASUREMENT = 'alerts';

export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'DeliveryError';
  }
}

export interface Deliverer {
  /** Most entries handed over at once. */
  readonly batchSize: number;
  deliver(entries: OutboxEntry[]): Promise<void>;
  close(): Promise<void>;
}

/** The JSON a webhook receives and an MQTT notifier publishes. */
export function notificationBody(t: Transition): Record<string, unknown> {
  return {
    version: 1,
    id: t.id,
    key: idempotencyKey(t),
    rule: t.rule,
    device: t.device,
    state: t.to,
    previous: t.from,
    severity: t.severity,
    metric: t.metric,
    value: t.value,
    threshold: t.threshold,
    eventTime: new Date(t.ts).toISOString(),
    ts: t.ts,
    ...(t.since !== undefined ? { since: t.since } : {}),
    ...(t.firedAt !== undefined ? { firedAt: t.firedAt } : {}),
    message: t.message,
  };
}

export function idempotencyKey(t: Transition): string {
  return `${t.id}:${t.to}`;
}

/** One history point: measurement `alerts`, tags rule/device/severity/state (ARCHITECTURE.md). */
export function historyLine(t: Transition): string {
  return toLine({
    measurement: ALERTS_MEASUREMENT,
    tags: { rule: t.rule, device: t.device, severity: t.severity, state: t.to },
    fields: {
      value: t.value,
      message: { str: t.message },
      alert_id: { str: t.id },
      threshold: t.threshold,
      metric: { str: t.metric },
      ...(t.since !== undefined ? { since: { int: t.since } } : {}),
      ...(t.firedAt !== undefined ? { fired_at: { int: t.firedAt } } : {}),
    },
    // The transition count as sub-millisecond offset: two transitions of one key in the same
    // millisecond stay two points, and a rewrite of the same transition overwrites itself.
    ts: BigInt(t.ts) * 1_000_000n + BigInt(t.n % 1_000_000),
  });
}

export class HistoryDeliverer implements Deliverer {
  readonly batchSize = 500;
  constructor(private readonly sink: PointSink) {}

  async deliver(entries: OutboxEntry[]): Promise<void> {
    try {
      await this.sink.write(entries.map((e) => historyLine(e.transition)));
    } catch (err) {
      if (isSluiceError(err, 'SLUICE_INFLUX_WRITE')) {
        const after = err.detail?.retryAfterSeconds as number | undefined;
        throw new DeliveryError(err.message, err.retryable, after === undefined ? undefined : after * 1000);
      }
      throw new DeliveryError((err as Error).message, true);
    }
  }

  async close(): Promise<void> {}
}

export class WebhookDeliverer implements Deliverer {
  readonly batchSize = 1;
  constructor(private readonly spec: Extract<NotifierSpec, { kind: 'webhook' }>) {}

  async deliver([e]: OutboxEntry[]): Promise<void> {
    let res: Response;
    try {
      res = await fetch(this.spec.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'sluice-cloud',
          ...this.spec.headers,
          'idempotency-key': idempotencyKey(e.transition),
        },
        body: JSON.stringify(notificationBody(e.transition)),
        signal: AbortSignal.timeout(this.spec.timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      throw new DeliveryError(`webhook ${this.spec.name} unreachable: ${(err as Error).message}${cause ? ` (${cause})` : ''}`, true);
    }
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return;
    const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
    const after = parseRetryAfter(res.headers.get('retry-after'));
    throw new DeliveryError(`webhook ${this.spec.name} answered HTTP ${res.status}`, retryable, after === undefined ? undefined : after * 1000);
  }

  async close(): Promise<void> {}
}

export class MqttDeliverer implements Deliverer {
  readonly batchSize = 1;
  private client: MqttClient | undefined;

  constructor(private readonly spec: Extract<NotifierSpec, { kind: 'mqtt' }>) {}

  private connect(): MqttClient {
    if (!this.client) {
      this.client = mqtt.connect(this.spec.url, {
        protocolVersion: 4,
        clean: true,
        reconnectPeriod: 2000,
        connectTimeout: this.spec.timeoutMs,
        clientId: `sluice-cloud-${this.spec.name}-${process.pid}`,
        ...(this.spec.username !== undefined ? { username: this.spec.username } : {}),
        ...(this.spec.password !== undefined ? { password: this.spec.password } : {}),
        // Fail fast instead of queueing while offline: the outbox is the queue, and it is durable.
        queueQoSZero: false,
      });
      this.client.on('error', () => undefined); // reported through failed deliveries
    }
    return this.client;
  }

  async deliver([e]: OutboxEntry[]): Promise<void> {
    const client = this.connect();
    const t = e.transition;
    const topic = this.spec.topic.replace(/\{(device|rule|state|severity)\}/g, (_m, k: string) =>
      k === 'device' ? t.device : k === 'rule' ? t.rule : k === 'state' ? t.to : t.severity,
    );
    if (!client.connected) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          client.off('connect', onConnect);
          reject(new DeliveryError(`mqtt notifier ${this.spec.name}: not connected to ${this.spec.url}`, true));
        }, this.spec.timeoutMs);
        const onConnect = () => {
          clearTimeout(timer);
          resolve();
        };
        client.once('connect', onConnect);
      });
    }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new DeliveryError(`mqtt notifier ${this.spec.name}: no PUBACK within ${this.spec.timeoutMs} ms`, true)), this.spec.timeoutMs);
      client.publish(topic, JSON.stringify(notificationBody(t)), { qos: this.spec.qos, retain: this.spec.retain }, (err) => {
        clearTimeout(timer);
        if (err) reject(new DeliveryError(`mqtt notifier ${this.spec.name}: ${err.message}`, true));
        else resolve();
      });
    });
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c) await new Promise<void>((resolve) => c.end(true, {}, () => resolve()));
  }
}

export class LogDeliverer implements Deliverer {
  readonly batchSize = 100;
  constructor(
    private readonly spec: Extract<NotifierSpec, { kind: 'log' }>,
    private readonly logger: Logger,
  ) {}

  async deliver(entries: OutboxEntry[]): Promise<void> {
    for (const e of entries) this.logger[this.spec.level]({ notifier: this.spec.name, alert: notificationBody(e.transition) }, e.transition.message);
  }

  async close(): Promise<void> {}
}

export function createDeliverer(spec: NotifierSpec, logger: Logger): Deliverer {
  switch (spec.kind) {
    case 'webhook':
      return new WebhookDeliverer(spec);
    case 'mqtt':
      return new MqttDeliverer(spec);
    case 'log':
      return new LogDeliverer(spec, logger);
  }
}

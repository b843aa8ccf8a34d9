/** Public types of the device simulator (options, hooks, live stats, result). */
import type { IClientOptions } from 'mqtt';
import type { Reading } from './signals.js';

export type SimFormat = 'json' | 'cbor';

export interface SimOptions {
  /** Broker URL: mqtt://host:port, mqtts://host:port (also tcp://, tls://, ws://, wss://). */
  url: string;
  /** Number of simulated devices; each is one MQTT connection. */
  devices: number;
  /** Readings per second per device (ignored with `max`). */
  rate: number;
  /** MQTT QoS of every publish. */
  qos: 0 | 1;
  /** Payload v1 encoding. */
  format: SimFormat;
  /** Stop publishing after this many ms from the start (then drain acks and disconnect). */
  durationMs?: number;
  /** Readings per device; a device stops after this many. */
  count?: number;
  /** Device id prefix: ids are `{prefix}-0001`, `{prefix}-0002`, … Default "sim". */
  prefix?: string;
  username?: string;
  password?: string;
  /** Seed of the signal generators; the same seed gives the same values. Default: random. */
  seed?: number;
  /** Load mode: publish as fast as the broker acknowledges, `window` in flight per device. */
  max?: boolean;
  /** Most readings in flight (published, not yet acked) per device. Default 16 with `max`, else 100. */
  window?: number;
  /** New connections per second while the fleet starts, so 1000 devices do not connect at once. Default 200. */
  connectRate?: number;
  /** How long to wait for outstanding QoS 1 acks after publishing stopped (ms). Default 5000. */
  drainTimeoutMs?: number;
  /**
   * Leave the first this many ms (connections ramping up, JIT warm-up) out of the result's
   * `steady`, which then counts acks from there until publishing stops. Shorter than `durationMs`,
   * if that is set. Default 0.
   */
  warmupMs?: number;
  /** TLS (mqtts://): CA certificate(s) in PEM, and whether to verify the broker's certificate. */
  ca?: string | Buffer;
  rejectUnauthorized?: boolean;
  /**
   * Keep every acknowledged {seq, ts} per device for the result (default true). Long load runs
   * turn it off to keep memory flat; the counts are kept either way.
   */
  recordAcks?: boolean;
  /** Stops the run early (publishing stops, acks drain, clients disconnect). */
  signal?: AbortSignal;
  /** Called every `progressIntervalMs` (default 500 ms) and once at the end. */
  onProgress?(stats: SimStats): void;
  progressIntervalMs?: number;
}

/** Test and instrumentation hooks; none is needed for normal runs. */
export interface SimHooks {
  /** Clock for each reading's `ts` (ms since the epoch). Default Date.now. */
  now?(): number;
  /** Called after each publish is handed to mqtt.js. */
  onPublish?(ev: PublishEvent): void;
  /** Called when a reading is acknowledged (QoS 1: PUBACK; QoS 0: written to the socket). */
  onAck?(ev: AckedReading & { deviceId: string }): void;
  /** Extra mqtt.js client options, merged over the simulator's (e.g. a short reconnectPeriod). */
  mqttOptions?: Partial<IClientOptions>;
}

export interface PublishEvent {
  deviceId: string;
  seq: number;
  ts: number;
  values: Reading;
  topic: string;
  payload: Buffer;
}

export interface AckedReading {
  seq: number;
  ts: number;
}

export interface SimStats {
  devices: number;
  /** Devices whose MQTT connection is currently up. */
  connected: number;
  sent: number;
  acked: number;
  errors: number;
  elapsedMs: number;
}

export interface DeviceResult {
  /** Readings handed to mqtt.js. */
  sent: number;
  /** Readings acknowledged. */
  ackedCount: number;
  /** Acknowledged readings with their event time, ascending by seq (empty with recordAcks: false). */
  acked: AckedReading[];
  /** The device seqs that were acknowledged, ascending (empty with recordAcks: false). */
  ackedSeqs: number[];
  /** Seqs sent but never acknowledged (drain timeout, publish error), ascending. */
  unacked: number[];
  errors: number;
  /** Times the connection came back after being lost. */
  reconnects: number;
}

export interface SimResult {
  sent: number;
  /** QoS 1: PUBACKs received; QoS 0: readings written to the socket. */
  acked: number;
  /** Readings sent and never acknowledged. */
  unacked: number;
  /** Connection errors, lost connections and failed publishes. */
  errors: number;
  durationMs: number;
  /** Acknowledged readings per second over the whole run. */
  rate: number;
  /**
   * Acknowledgements from the end of `warmupMs` until publishing stopped, how long that was, and
   * their rate: the sustained rate, without the connection ramp and the final drain. Only with
   * `warmupMs`.
   */
  steady?: { acked: number; durationMs: number; rate: number };
  perDevice: Map<string, DeviceResult>;
  /** The last error message seen, if any. */
  lastError?: string;
}

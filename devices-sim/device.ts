/**
 * One simulated device: one real MQTT connection (client id = device id) publishing payload v1
 * readings on devices/{id}/telemetry, with `seq` counting from 1 and `ts` = the clock at publish.
 *
 * Guarantees: seqs are published in increasing order; at most `window` readings are in flight
 * (published, callback not yet called), which bounds memory while the broker is slow or away;
 * a lost connection is counted and left to mqtt.js to restore (it resends unacked QoS 1
 * publishes). Each device runs one publish loop; drain() and close() follow it, never overlap it.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { encodePayload } from '../protocols/payload.js';
import { telemetryTopic } from '../protocols/topic.js';
import { DeviceSignals } from './signals.js';
import type { AckedReading, DeviceResult, SimFormat, SimHooks } from './types.js';

export interface DeviceConfig {
  id: string;
  url: string;
  qos: 0 | 1;
  format: SimFormat;
  rate: number;
  max: boolean;
  count?: number;
  window: number;
  recordAcks: boolean;
  seed: number;
  startDelayMs: number;
  clientOptions: IClientOptions;
  hooks: SimHooks;
}

/** Counters shared by the whole fleet, updated in place so live stats cost nothing to read. */
export interface FleetCounters {
  sent: number;
  acked: number;
  errors: number;
  connected: number;
  lastError?: string;
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export class SimDevice {
  readonly id: string;
  private readonly cfg: DeviceConfig;
  private readonly fleet: FleetCounters;
  private readonly signals: DeviceSignals;
  private readonly topic: string;
  private readonly now: () => number;
  private client?: MqttClient;
  private seq = 0;
  private sent = 0;
  private errors = 0;
  private reconnects = 0;
  private inflight = 0;
  private ackedCount = 0;
  private connected = false;
  private everConnected = false;
  private closing = false;
  private readonly acked: AckedReading[] = [];
  /** seq → ts of readings sent and not (yet) acknowledged. */
  private readonly pending = new Map<number, number>();
  private wake?: () => void;

  constructor(cfg: DeviceConfig, fleet: FleetCounters) {
    this.cfg = cfg;
    this.id = cfg.id;
    this.fleet = fleet;
    this.signals = new DeviceSignals(cfg.seed);
    this.topic = telemetryTopic(cfg.id);
    this.now = cfg.hooks.now ?? Date.now;
  }

  /** Waits its start slot, connects, and publishes until `count` is reached or `stop` aborts. */
  async run(stop: AbortSignal): Promise<void> {
    if (!(await sleep(this.cfg.startDelayMs, stop))) return;
    this.connect();
    if (!(await this.until(() => this.connected, stop))) return;
    await this.publishLoop(stop);
  }

  /** Waits until every published reading has its callback, or `signal` aborts. */
  async drain(signal: AbortSignal): Promise<void> {
    await this.until(() => this.inflight === 0, signal);
  }

  /** Ends the connection: a clean DISCONNECT when nothing is in flight, else a forced close. */
  async close(): Promise<void> {
    this.closing = true;
    const c = this.client;
    if (!c) return;
    const force = this.inflight > 0 || !c.connected;
    await new Promise<void>((resolve) => {
      // A broker that stops reading could stall a clean end; never wait more than 2 s.
      const timer = setTimeout(() => {
        c.stream?.destroy();
        resolve();
      }, 2000);
      c.end(force, {}, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  result(): DeviceResult {
    const acked = [...this.acked].sort((a, b) => a.seq - b.seq);
    return {
      sent: this.sent,
      ackedCount: this.ackedCount,
      acked,
      ackedSeqs: acked.map((a) => a.seq),
      unacked: [...this.pending.keys()].sort((a, b) => a - b),
      errors: this.errors,
      reconnects: this.reconnects,
    };
  }

  private connect(): void {
    const c = mqtt.connect(this.cfg.url, { ...this.cfg.clientOptions, clientId: this.id });
    this.client = c;
    c.on('connect', () => {
      if (this.everConnected) this.reconnects++;
      this.everConnected = true;
      if (!this.connected) this.fleet.connected++;
      this.connected = true;
      this.changed();
    });
    c.on('close', () => {
      if (this.connected) {
        this.fleet.connected--;
        if (!this.closing) this.error('connection lost');
      }
      this.connected = false;
    });
    c.on('error', (err) => {
      if (!this.closing) this.error(err.message);
    });
  }

  private async publishLoop(stop: AbortSignal): Promise<void> {
    const { max, rate, window, count } = this.cfg;
    const interval = max ? 0 : 1000 / rate;
    // Simulated seconds per reading: real spacing in rate mode, one second per reading in max mode.
    const dt = max ? 1 : 1 / rate;
    // A random phase keeps devices that connected together from publishing in lockstep.
    let next = performance.now() + ((this.cfg.seed % 1000) / 1000) * interval;
    let burst = 0;
    while (!stop.aborted && (count === undefined || this.seq < count)) {
      if (!max) {
        const wait = next - performance.now();
        if (wait > 0 && !(await sleep(wait, stop))) break;
        // Far behind (the broker stalled us): resume the schedule instead of bursting to catch up.
        if (wait < -1000) next = performance.now();
        next += interval;
      } else if (++burst >= window) {
        // QoS 0 callbacks can fire synchronously; let timers and sockets run between windows.
        burst = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      if (!(await this.until(() => this.inflight < window, stop))) break;
      this.publishOne(dt);
    }
  }

  private publishOne(dt: number): void {
    const seq = ++this.seq;
    const ts = this.now();
    const values = this.signals.next(dt);
    const payload = encodePayload({ ts, values, seq }, this.cfg.format);
    this.sent++;
    this.fleet.sent++;
    this.inflight++;
    this.pending.set(seq, ts);
    this.cfg.hooks.onPublish?.({ deviceId: this.id, seq, ts, values, topic: this.topic, payload });
    this.client!.publish(this.topic, payload, { qos: this.cfg.qos }, (err) => this.settled(seq, ts, err));
  }

  private settled(seq: number, ts: number, err?: Error): void {
    this.inflight--;
    if (err) {
      // mqtt.js fails every outstanding publish when we end the client: that is not an error.
      if (!this.closing) this.error(`publish seq ${seq}: ${err.message}`);
    } else {
      this.pending.delete(seq);
      this.ackedCount++;
      if (this.cfg.recordAcks) this.acked.push({ seq, ts });
      this.fleet.acked++;
      this.cfg.hooks.onAck?.({ deviceId: this.id, seq, ts });
    }
    this.changed();
  }

  private error(message: string): void {
    this.errors++;
    this.fleet.errors++;
    this.fleet.lastError = `${this.id}: ${message}`;
  }

  private changed(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Resolves true once `pred` holds (re-checked on every state change), false if `signal` aborts first. */
  private async until(pred: () => boolean, signal: AbortSignal): Promise<boolean> {
    while (!pred()) {
      if (signal.aborted) return false;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          signal.removeEventListener('abort', done);
          resolve();
        };
        this.wake = done;
        signal.addEventListener('abort', done, { once: true });
      });
    }
    return true;
  }
}

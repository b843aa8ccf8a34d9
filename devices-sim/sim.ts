/**
 * The simulated fleet: `runSim` starts N devices (devices-sim/device.ts), each one real MQTT
 * connection, spreads their connections over time (`connectRate` per second), and runs them until
 * `durationMs` elapses, every device has sent `count` readings, or `signal` aborts. Then it waits up to
 * `drainTimeoutMs` for outstanding acks, disconnects every client and reports per device which
 * seqs were acknowledged (with their `ts`) and which were not.
 *
 * A broker that drops connections does not end the run: mqtt.js reconnects and resends unacked
 * QoS 1 publishes (the broker may then see a seq twice); each loss is counted in `errors`.
 * Invalid options throw SluiceError SLUICE_BAD_CONFIG naming the option, before any connection.
 */
import { randomInt } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { IClientOptions } from 'mqtt';
import { SluiceError } from '../protocols/errors.js';
import { DEVICE_ID_RE } from '../protocols/topic.js';
import { SimDevice, type FleetCounters } from './device.js';
import { deriveSeed } from './signals.js';
import type { DeviceResult, SimHooks, SimOptions, SimResult, SimStats } from './types.js';

export type * from './types.js';

const URL_SCHEMES = new Set(['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ssl:', 'ws:', 'wss:']);

function bad(option: string, message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_CONFIG', `sim option ${option}: ${message}`);
}

function int(option: string, x: unknown, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) throw bad(option, `must be an integer from ${min} to ${max}, got ${String(x)}`);
  return x;
}

function positive(option: string, x: unknown, max: number): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0 || x > max) throw bad(option, `must be a number > 0 and ≤ ${max}, got ${String(x)}`);
  return x;
}

/** `{prefix}-0001`: zero-padded to at least 4 digits so ids sort in fleet order. */
export function deviceId(prefix: string, index: number, devices: number): string {
  return `${prefix}-${String(index + 1).padStart(Math.max(4, String(devices).length), '0')}`;
}

export type ResolvedSimOptions = Required<Pick<SimOptions, 'url' | 'devices' | 'rate' | 'qos' | 'format' | 'prefix' | 'seed' | 'max' | 'window' | 'connectRate' | 'drainTimeoutMs' | 'progressIntervalMs' | 'warmupMs'>> &
  SimOptions;

/** Validates options and fills in defaults. Throws SLUICE_BAD_CONFIG naming the first bad option. */
export function resolveSimOptions(opts: SimOptions): ResolvedSimOptions {
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    throw bad('url', `"${opts.url}" is not a URL (example: mqtt://127.0.0.1:1883)`);
  }
  if (!URL_SCHEMES.has(url.protocol)) throw bad('url', `scheme ${url.protocol} is not supported (use mqtt:// or mqtts://)`);
  const devices = int('devices', opts.devices, 1, 100_000);
  const max = opts.max ?? false;
  const rate = max && opts.rate === undefined ? 1 : positive('rate', opts.rate, 100_000);
  if (opts.qos !== 0 && opts.qos !== 1) throw bad('qos', `must be 0 or 1, got ${String(opts.qos)}`);
  if (opts.format !== 'json' && opts.format !== 'cbor') throw bad('format', `must be "json" or "cbor", got ${String(opts.format)}`);
  if (opts.durationMs !== undefined && (!Number.isFinite(opts.durationMs) || opts.durationMs < 0)) throw bad('durationMs', 'must be a non-negative number of ms');
  if (opts.count !== undefined) int('count', opts.count, 1, Number.MAX_SAFE_INTEGER);
  if (opts.durationMs === undefined && opts.count === undefined && !opts.signal) throw bad('durationMs', 'a run needs durationMs, count or signal to end');
  const prefix = opts.prefix ?? 'sim';
  if (!DEVICE_ID_RE.test(deviceId(prefix, devices - 1, devices))) throw bad('prefix', `"${prefix}" makes invalid device ids (allowed: A-Z a-z 0-9 _ . -, ids up to 64 characters)`);
  const seed = opts.seed === undefined ? randomInt(2 ** 32) : int('seed', opts.seed, 0, 2 ** 32 - 1);
  const window = int('window', opts.window ?? (max ? 16 : 100), 1, 10_000);
  const connectRate = positive('connectRate', opts.connectRate ?? 200, 1e6);
  const drainTimeoutMs = int('drainTimeoutMs', opts.drainTimeoutMs ?? 5000, 0, 3_600_000);
  const progressIntervalMs = int('progressIntervalMs', opts.progressIntervalMs ?? 500, 10, 3_600_000);
  const warmupMs = int('warmupMs', opts.warmupMs ?? 0, 0, 3_600_000);
  if (opts.durationMs !== undefined && warmupMs > 0 && warmupMs >= opts.durationMs) throw bad('warmupMs', `must be shorter than durationMs (the steady rate is measured between them), got ${warmupMs} ms`);
  return { ...opts, devices, rate, max, prefix, seed, window, connectRate, drainTimeoutMs, progressIntervalMs, warmupMs };
}

function steadyOf(from: { t: number; acked: number }, to: { t: number; acked: number }): NonNullable<SimResult['steady']> {
  const acked = to.acked - from.acked;
  const durationMs = to.t - from.t;
  return { acked, durationMs, rate: (acked * 1000) / durationMs };
}

export async function runSim(opts: SimOptions, hooks: SimHooks = {}): Promise<SimResult> {
  const o = resolveSimOptions(opts);
  const started = performance.now();
  const fleet: FleetCounters = { sent: 0, acked: 0, errors: 0, connected: 0 };
  const stats = (): SimStats => ({ devices: o.devices, connected: fleet.connected, sent: fleet.sent, acked: fleet.acked, errors: fleet.errors, elapsedMs: performance.now() - started });

  const stop = new AbortController();
  // Every device listens on the shared signals: that is N listeners by design, not a leak.
  setMaxListeners(0, stop.signal);
  const onAbort = (): void => stop.abort();
  if (o.signal?.aborted) stop.abort();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = o.durationMs === undefined ? undefined : setTimeout(onAbort, o.durationMs);
  const progress = o.onProgress ? setInterval(() => o.onProgress!(stats()), o.progressIntervalMs) : undefined;
  // The steady rate counts acks between the end of the warm-up and the end of publishing.
  let warm: { t: number; acked: number } | undefined;
  const warmTimer = o.warmupMs > 0 ? setTimeout(() => (warm = { t: performance.now(), acked: fleet.acked }), o.warmupMs) : undefined;
  let published: { t: number; acked: number } | undefined;

  const clientOptions: IClientOptions = {
    protocolVersion: 4,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    resubscribe: false,
    ...(o.username === undefined ? {} : { username: o.username }),
    ...(o.password === undefined ? {} : { password: o.password }),
    ...(o.ca === undefined ? {} : { ca: o.ca }),
    ...(o.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: o.rejectUnauthorized }),
    ...hooks.mqttOptions,
  };
  const devices = Array.from(
    { length: o.devices },
    (_, i) =>
      new SimDevice(
        {
          id: deviceId(o.prefix, i, o.devices),
          url: o.url,
          qos: o.qos,
          format: o.format,
          rate: o.rate,
          max: o.max,
          count: o.count,
          window: o.window,
          recordAcks: o.recordAcks ?? true,
          seed: deriveSeed(o.seed, i),
          startDelayMs: Math.floor((i * 1000) / o.connectRate),
          clientOptions,
          hooks,
        },
        fleet,
      ),
  );

  let durationMs: number;
  try {
    await Promise.all(devices.map((d) => d.run(stop.signal)));
    published = { t: performance.now(), acked: fleet.acked };
    const drained = AbortSignal.timeout(o.drainTimeoutMs);
    setMaxListeners(0, drained);
    await Promise.all(devices.map((d) => d.drain(drained)));
  } finally {
    durationMs = performance.now() - started;
    clearTimeout(timer);
    clearTimeout(warmTimer);
    clearInterval(progress);
    o.signal?.removeEventListener('abort', onAbort);
    await Promise.all(devices.map((d) => d.close()));
  }
  o.onProgress?.(stats());

  const perDevice = new Map<string, DeviceResult>(devices.map((d) => [d.id, d.result()]));
  let unacked = 0;
  for (const r of perDevice.values()) unacked += r.unacked.length;
  return {
    sent: fleet.sent,
    acked: fleet.acked,
    unacked,
    errors: fleet.errors,
    durationMs,
    rate: durationMs > 0 ? (fleet.acked * 1000) / durationMs : 0,
    ...(warm && published && published.t > warm.t ? { steady: steadyOf(warm, published) } : {}),
    perDevice,
    ...(fleet.lastError === undefined ? {} : { lastError: fleet.lastError }),
  };
}

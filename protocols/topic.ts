/**
 * Topic grammar (ARCHITECTURE.md "Wire formats"):
 *   devices/{deviceId}/telemetry            one reading, payload v1
 *   devices/{deviceId}/telemetry/{metric}   one metric as a plain number (or true/false)
 * deviceId matches [A-Za-z0-9_.-]{1,64}; a metric name starts with a letter, then the same alphabet,
 * and is not one of RESERVED_NAMES.
 */
import { SluiceError } from './errors.js';

export const DEVICE_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** A metric name: the same rule as payload v1's METRIC_NAME_RE (a letter first). */
export const METRIC_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
/** Names InfluxDB or our own schema reserve: never accepted as metric or tag names. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(['time', 'gateway', 'device', '_field', '_measurement']);

export interface TelemetryTopic {
  deviceId: string;
  /** Set for the single-metric form `devices/{id}/telemetry/{metric}`. */
  metric?: string;
}

export function isTelemetryTopic(topic: string): boolean {
  return topic.startsWith('devices/') && /^devices\/[^/]*\/telemetry(\/|$)/.test(topic);
}

/**
 * Parse a telemetry topic. Returns null for topics outside the telemetry namespace
 * (they are brokered normally); throws SLUICE_BAD_TOPIC for a telemetry topic that is malformed.
 */
export function parseTelemetryTopic(topic: string): TelemetryTopic | null {
  if (!isTelemetryTopic(topic)) return null;
  const parts = topic.split('/');
  const deviceId = parts[1];
  if (!DEVICE_ID_RE.test(deviceId)) {
    throw new SluiceError('SLUICE_BAD_TOPIC', `bad device id in topic "${truncate(topic)}": must match [A-Za-z0-9_.-]{1,64}`);
  }
  if (parts.length === 3) return { deviceId };
  if (parts.length === 4) {
    const metric = parts[3];
    if (!METRIC_RE.test(metric) || RESERVED_NAMES.has(metric)) {
      throw new SluiceError('SLUICE_BAD_TOPIC', `bad metric name in topic "${truncate(topic)}": must match [A-Za-z][A-Za-z0-9_.-]{0,63} and not be reserved`);
    }
    return { deviceId, metric };
  }
  throw new SluiceError('SLUICE_BAD_TOPIC', `telemetry topic "${truncate(topic)}" has too many levels (want devices/{id}/telemetry[/{metric}])`);
}

export function telemetryTopic(deviceId: string, metric?: string): string {
  return metric === undefined ? `devices/${deviceId}/telemetry` : `devices/${deviceId}/telemetry/${metric}`;
}

export function truncate(s: string, n = 80): string {
  return s.length <= n ? s : `${s.slice(0, n)}…`;
}

/** Topic grammar: devices/{id}/telemetry[/{metric}], everything else malformed or not ours. */
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../protocols/errors.js';
import { isTelemetryTopic, parseTelemetryTopic, telemetryTopic, truncate } from '../../protocols/topic.js';

function topicError(topic: string): { code?: string; message: string } {
  try {
    parseTelemetryTopic(topic);
  } catch (err) {
    expect(isSluiceError(err)).toBe(true);
    return err as { code?: string; message: string };
  }
  throw new Error(`expected "${topic}" to be rejected`);
}

describe('parseTelemetryTopic', () => {
  it('parses the reading form and the single-metric form', () => {
    expect(parseTelemetryTopic('devices/d1/telemetry')).toEqual({ deviceId: 'd1' });
    expect(parseTelemetryTopic('devices/sim-0001/telemetry/temperature')).toEqual({ deviceId: 'sim-0001', metric: 'temperature' });
    expect(parseTelemetryTopic('devices/A.b_c-9/telemetry/flow.rate_l-s')).toEqual({ deviceId: 'A.b_c-9', metric: 'flow.rate_l-s' });
    expect(parseTelemetryTopic(`devices/${'x'.repeat(64)}/telemetry`)).toEqual({ deviceId: 'x'.repeat(64) });
  });

  it('returns null outside the telemetry namespace', () => {
    for (const t of ['', 'devices', 'devices/d1', 'devices/d1/status', 'devices/d1/telemetryx', 'Devices/d1/telemetry', 'sys/devices/d1/telemetry', '/devices/d1/telemetry', 'devices/d1/x/telemetry']) {
      expect(parseTelemetryTopic(t)).toBeNull();
      expect(isTelemetryTopic(t)).toBe(false);
    }
  });

  it.each([
    ['devices//telemetry', 'empty device id'],
    ['devices/+/telemetry', 'wildcard device id'],
    ['devices/#/telemetry', 'multi-level wildcard'],
    ['devices/d 1/telemetry', 'space'],
    ['devices/dévice/telemetry', 'non-ASCII'],
    [`devices/${'x'.repeat(65)}/telemetry`, 'device id too long'],
    ['devices/d1\u0000/telemetry', 'NUL byte'],
  ])('rejects a bad device id: %s (%s)', (topic) => {
    const err = topicError(topic);
    expect(err.code).toBe('SLUICE_BAD_TOPIC');
    expect(err.message).toMatch(/device id/);
  });

  it.each([
    ['devices/d1/telemetry/', 'empty metric'],
    ['devices/d1/telemetry/+', 'wildcard metric'],
    ['devices/d1/telemetry/_x', 'metric starting with underscore'],
    ['devices/d1/telemetry/9lives', 'metric starting with a digit'],
    ['devices/d1/telemetry/__proto__', '__proto__'],
    ['devices/d1/telemetry/time', 'reserved name time'],
    ['devices/d1/telemetry/device', 'reserved name device'],
    [`devices/d1/telemetry/m${'x'.repeat(64)}`, 'metric too long'],
  ])('rejects a bad metric: %s (%s)', (topic) => {
    const err = topicError(topic);
    expect(err.code).toBe('SLUICE_BAD_TOPIC');
    expect(err.message).toMatch(/metric/);
  });

  it('rejects too many levels', () => {
    expect(topicError('devices/d1/telemetry/t/extra').code).toBe('SLUICE_BAD_TOPIC');
    expect(topicError('devices/d1/telemetry//').code).toBe('SLUICE_BAD_TOPIC');
  });

  it('keeps huge topics out of error messages', () => {
    const err = topicError(`devices/${'y'.repeat(10_000)}/telemetry`);
    expect(err.message.length).toBeLessThan(300);
  });
});

describe('telemetryTopic / truncate', () => {
  it('builds topics that parse back', () => {
    expect(parseTelemetryTopic(telemetryTopic('d1'))).toEqual({ deviceId: 'd1' });
    expect(parseTelemetryTopic(telemetryTopic('d1', 'humidity'))).toEqual({ deviceId: 'd1', metric: 'humidity' });
  });

  it('truncates long strings only', () => {
    expect(truncate('abc', 5)).toBe('abc');
    expect(truncate('abcdef', 3)).toBe('abc…');
  });
});

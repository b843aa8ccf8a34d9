/** filterMayMatchTelemetry (gateway/broker.ts): which subscriptions turn the telemetry fan-out on. */
import { describe, expect, it } from 'vitest';
import { filterMayMatchTelemetry } from '../../gateway/broker.js';

describe('filterMayMatchTelemetry', () => {
  it.each([
    '#',
    '+/#',
    'devices/#',
    'devices/+/telemetry',
    'devices/d1/telemetry',
    'devices/d1/telemetry/#',
    'devices/d1/telemetry/temperature',
    'devices/+/+',
    '+/+/telemetry',
    '+/+/+/+',
    '$share/group/devices/+/telemetry',
    '$share/group/#',
  ])('%s may match telemetry', (f) => expect(filterMayMatchTelemetry(f)).toBe(true));

  it.each(['devices', 'devices/+', 'devices/d1/cmd', 'devices/+/status/#', 'factory/#', '$SYS/#', '+/+', 'telemetry/#', '$share/group/factory/#'])('%s cannot', (f) =>
    expect(filterMayMatchTelemetry(f)).toBe(false),
  );
});

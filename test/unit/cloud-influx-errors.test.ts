import { describe, expect, it } from 'vitest';
import { influxWriteError, isRetryableStatus, parseRetryAfter } from '../../cloud/influx-writer.js';

describe('InfluxDB write error classification', () => {
  it.each([
    [undefined, true],
    [500, true],
    [503, true],
    [429, true],
    [408, true],
    [401, true],
    [403, true],
    [404, true],
    [400, false],
    [413, false],
    [422, false],
  ])('HTTP %s → retryable %s', (status, retryable) => {
    expect(isRetryableStatus(status)).toBe(retryable);
    const err = influxWriteError('x', { status });
    expect(err.code).toBe('SLUICE_INFLUX_WRITE');
    expect(err.retryable).toBe(retryable);
  });

  it('parses Retry-After seconds and dates', () => {
    expect(parseRetryAfter('7')).toBe(7);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 0)).toBe(10);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});

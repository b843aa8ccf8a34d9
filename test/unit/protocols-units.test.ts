/** Human units for flags and config: durations, sizes, host:port. Bad input is SLUICE_BAD_CONFIG naming the setting. */
import { describe, expect, it } from 'vitest';
import { parseDuration, parseHostPort, parseSize } from '../../protocols/units.js';

function failure(fn: () => unknown): { code?: string; message: string } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('expected a failure');
}

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['2d', 172_800_000],
    ['1500', 1500],
    [' 10s ', 10_000],
    [0, 0],
    [42, 42],
  ])('%j → %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each(['', 's', '-5s', '5 s', '5x', '1h30', 'abc', '1e3'])('rejects %j and names the setting', (input) => {
    const f = failure(() => parseDuration(input, '--duration'));
    expect(f.code).toBe('SLUICE_BAD_CONFIG');
    expect(f.message).toMatch(/--duration/);
  });

  it('rejects negative or non-finite numbers', () => {
    expect(failure(() => parseDuration(-1)).code).toBe('SLUICE_BAD_CONFIG');
    expect(failure(() => parseDuration(Infinity)).code).toBe('SLUICE_BAD_CONFIG');
  });
});

describe('parseSize', () => {
  it.each([
    ['4096', 4096],
    ['64MiB', 64 * 1024 ** 2],
    ['2GB', 2e9],
    ['100k', 100_000],
    ['1.5kib', 1536],
  ])('%j → %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  it.each(['', 'MiB', '-1', '5 parsecs', '1.2.3'])('rejects %j', (input) => {
    expect(failure(() => parseSize(input, 'log.quota')).message).toMatch(/log\.quota/);
  });
});

describe('parseHostPort', () => {
  it('parses host:port, :port and [v6]:port', () => {
    expect(parseHostPort('example.org:1883')).toEqual({ host: 'example.org', port: 1883 });
    expect(parseHostPort(':0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseHostPort('[::1]:8080')).toEqual({ host: '::1', port: 8080 });
  });

  it.each(['1883', 'host:', 'host:99999', 'host:port'])('rejects %j', (input) => {
    expect(failure(() => parseHostPort(input, 'listen')).code).toBe('SLUICE_BAD_CONFIG');
  });
});

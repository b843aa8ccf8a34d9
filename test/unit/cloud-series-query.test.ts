import { describe, expect, it } from 'vitest';
import { parseSeriesQuery, parseTime, seriesInfluxQL, seriesPoints } from '../../cloud/series-query.js';
import { quoteIdent, quoteString } from '../../cloud/influxql.js';

const NOW = Date.parse('2024-11-21T15:00:00Z');
const q = (s: string) => parseSeriesQuery(new URLSearchParams(s), NOW);
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return 'no error';
};

describe('series query parameters', () => {
  it('parses times: ms epoch, ISO, relative, now', () => {
    expect(parseTime('1732200000000', 'from', NOW)).toBe(1732200000000);
    expect(parseTime('2024-11-21T14:00:00Z', 'from', NOW)).toBe(NOW - 3_600_000);
    expect(parseTime('2024-11-21', 'from', NOW)).toBe(Date.parse('2024-11-21'));
    expect(parseTime('-1h', 'from', NOW)).toBe(NOW - 3_600_000);
    expect(parseTime('now-30m', 'from', NOW)).toBe(NOW - 1_800_000);
    expect(parseTime('now', 'to', NOW)).toBe(NOW);
    expect(code(() => parseTime('yesterday', 'from', NOW))).toBe('SLUICE_BAD_QUERY');
    expect(code(() => parseTime('-1x', 'from', NOW))).toBe('SLUICE_BAD_QUERY');
  });

  it('defaults to the last hour, raw points', () => {
    expect(q('device=d1&metric=temperature')).toEqual({ device: 'd1', metric: 'temperature', from: NOW - 3_600_000, to: NOW, limit: 10000 });
  });

  it.each([
    ['device=a%22%20OR%201%3D1&metric=t', 'quote and OR'],
    ["device=a'%20OR%20'1'%3D'1&metric=t", 'single quotes'],
    ['device=x%3BDROP&metric=t', 'semicolon'],
    ['device=..%2F&metric=t', 'path'],
    ['device=d&metric=t%22%20FROM%20x', 'metric with quote'],
    ['device=d&metric=x%3BDROP%20DATABASE%20sluice', 'metric with semicolon'],
    ['device=&metric=t', 'empty device'],
    ['metric=t', 'missing device'],
    [`device=${'a'.repeat(65)}&metric=t`, 'too long'],
    ['device=d&metric=t&fn=mean', 'fn without every'],
    ['device=d&metric=t&every=1m&fn=median', 'unknown fn'],
    ['device=d&metric=t&every=soon', 'bad every'],
    ['device=d&metric=t&every=1ms&from=0', 'too many buckets'],
    ['device=d&metric=t&window=1m%22', 'bad window'],
    ['device=d&metric=t&from=now&to=-1h', 'from after to'],
    ['device=d&metric=t&limit=0', 'limit 0'],
  ])('refuses %s (%s) with SLUICE_BAD_QUERY', (s) => {
    expect(code(() => q(s))).toBe('SLUICE_BAD_QUERY');
  });

  it('builds raw, bucketed and window InfluxQL with quoted names and integer times', () => {
    const from = 1732200000000;
    const to = 1732203600000;
    expect(seriesInfluxQL(q(`device=d1&metric=temperature&from=${from}&to=${to}`))).toBe(
      `SELECT "temperature" AS "v" FROM "telemetry" WHERE "device" = 'd1' AND time >= 1732200000000000000 AND time <= 1732203600000999999 ORDER BY time ASC LIMIT 10000`,
    );
    expect(seriesInfluxQL(q(`device=d1&metric=temperature&from=${from}&to=${to}&every=1m&fn=max`))).toBe(
      `SELECT max("temperature") AS "v" FROM "telemetry" WHERE "device" = 'd1' AND time >= 1732200000000000000 AND time <= 1732203600000999999 GROUP BY time(60000ms) fill(none) ORDER BY time ASC LIMIT 10000`,
    );
    expect(seriesInfluxQL(q(`device=d1&metric=temperature&from=${from}&to=${to}&window=1m`))).toContain('SELECT "temperature_mean" AS "v" FROM "telemetry_1m"');
    expect(seriesInfluxQL(q(`device=d1&metric=t&from=${from}&to=${to}&window=1m&fn=count&every=5m`))).toContain('SELECT sum("t_count") AS "v" FROM "telemetry_1m"');
  });

  it('quoting escapes backslashes and quotes', () => {
    expect(quoteIdent('a"b\\')).toBe('"a\\"b\\\\"');
    expect(quoteString("it's\\")).toBe("'it\\'s\\\\'");
  });

  it('maps InfluxQL rows to points, skipping nulls', () => {
    expect(seriesPoints([{ name: 'telemetry', columns: ['time', 'v'], values: [[2, 1.5], [1, true], [3, null]] }])).toEqual([
      { t: 1, v: true },
      { t: 2, v: 1.5 },
    ]);
  });
});

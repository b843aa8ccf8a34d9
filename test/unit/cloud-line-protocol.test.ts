import { describe, expect, it } from 'vitest';
import { escapeKey, escapeMeasurement, escapeStringField, toLine } from '../../cloud/line-protocol.js';
import { aggToPoint, rawTimestampNs, rawToPoint } from '../../cloud/points.js';

describe('line protocol escaping', () => {
  it('escapes measurement commas and spaces but not equals', () => {
    expect(escapeMeasurement('a b,c=d')).toBe('a\\ b\\,c=d');
  });

  it('escapes commas, equals and spaces in tag keys, tag values and field keys', () => {
    expect(escapeKey('room a,b=c')).toBe('room\\ a\\,b\\=c');
  });

  it('never lets a newline start a second line', () => {
    const line = toLine({ measurement: 'm\n', tags: { t: 'x\ny z\r\t' }, fields: { 'f\n': 1 }, ts: 5n });
    expect(line.split('\n')).toHaveLength(1);
    expect(line).toBe('m\\n,t=x\\ny\\ z\\r\\t f\\n=1 5');
  });

  it('drops trailing backslashes (InfluxDB 1.x cannot express them) and omits tags left empty', () => {
    expect(toLine({ measurement: 'm', tags: { a: 'v\\\\', b: '\\', c: 'mid\\dle' }, fields: { f: 1 } })).toBe('m,a=v,c=mid\\dle f=1');
  });

  it('quotes string fields, escaping quotes and backslashes', () => {
    expect(escapeStringField('say "hi" \\o/')).toBe('"say \\"hi\\" \\\\o/"');
    expect(toLine({ measurement: 'm', fields: { s: { str: 'a"b' } } })).toBe('m s="a\\"b"');
  });

  it('formats floats, integers and booleans', () => {
    const line = toLine({ measurement: 'm', fields: { f: 21.5, g: 3, big: 1e21, tiny: 1.5e-7, i: { int: 7 }, b: true, c: false }, ts: 1n });
    expect(line).toBe('m f=21.5,g=3,big=1e+21,tiny=1.5e-7,i=7i,b=true,c=false 1');
  });

  it('sorts tags by key and skips undefined fields', () => {
    expect(toLine({ measurement: 'm', tags: { z: '1', a: '2' }, fields: { x: 1, y: undefined } })).toBe('m,a=2,z=1 x=1');
  });

  it('refuses a point without fields and non-finite numbers, with a stable code', () => {
    expect(() => toLine({ measurement: 'm', fields: {} })).toThrow(expect.objectContaining({ code: 'SLUICE_BAD_BATCH' }));
    expect(() => toLine({ measurement: 'm', fields: { f: Number.NaN } })).toThrow(expect.objectContaining({ code: 'SLUICE_BAD_BATCH' }));
  });
});

describe('point mapping', () => {
  it('raw record: telemetry, gateway/device/record tags, one field per metric, ns time with seq offset', () => {
    const p = rawToPoint('gw-1', { seq: 42, dev: 'dev.1', ts: 1732200000123, vals: { temperature: 21.5, door_open: false, n: 3 }, tags: { room: 'a 1' } });
    expect(p.measurement).toBe('telemetry');
    expect(p.tags).toEqual({ room: 'a 1', gateway: 'gw-1', device: 'dev.1' });
    expect(p.ts).toBe(1732200000123000042n);
    expect(toLine(p)).toBe('telemetry,device=dev.1,gateway=gw-1,room=a\\ 1 temperature=21.5,door_open=false,n=3 1732200000123000042');
  });

  it('record tags cannot override gateway or device', () => {
    const p = rawToPoint('gw', { seq: 1, dev: 'd', ts: 1, vals: { x: 1 }, tags: { gateway: 'evil', device: 'evil' } });
    expect(p.tags).toMatchObject({ gateway: 'gw', device: 'd' });
  });

  it('two readings in the same millisecond get distinct timestamps; the same record always the same', () => {
    expect(rawTimestampNs(1732200000123, 7)).not.toBe(rawTimestampNs(1732200000123, 8));
    expect(rawTimestampNs(1732200000123, 7)).toBe(rawTimestampNs(1732200000123, 7));
    // exact beyond 2^53
    expect(rawTimestampNs(9_007_199_254_740, 999_999).toString()).toBe('9007199254740999999');
    expect(rawTimestampNs(1, 1_000_001)).toBe(1_000_001n);
  });

  it('aggregate: telemetry_<win>, basicstats field names, integer count, window start as time', () => {
    const p = aggToPoint('gw', {
      seq: 9, dev: 'd1', win: '1m', start: 1732200000000, end: 1732200060000, rev: 1,
      aggs: { temperature: { count: 4, min: 20, max: 23, mean: 21.5, sum: 86, last: 22 }, door: { count: 2, mean: 0.5, last: true } },
    });
    expect(toLine(p)).toBe(
      'telemetry_1m,device=d1,gateway=gw temperature_count=4i,temperature_min=20,temperature_max=23,temperature_mean=21.5,temperature_sum=86,temperature_last=22,door_count=2i,door_mean=0.5,door_last=true 1732200000000000000',
    );
  });
});

/**
 * rawToLine's caches (line starts per gateway and device, field key starts, escaped names, the
 * high digits of the millisecond) must never change a line: edge timestamps, names that need
 * escaping or escape to nothing, and more distinct devices than the caches hold.
 */
import { describe, expect, it } from 'vitest';
import { toLine } from '../../cloud/line-protocol.js';
import { rawToLine, rawToPoint } from '../../cloud/points.js';
import type { RawRecord } from '../../protocols/batch.js';

const same = (gw: string, r: RawRecord) => expect(rawToLine(gw, r)).toBe(toLine(rawToPoint(gw, r)));

describe('rawToLine with warm and overflowing caches', () => {
  it('timestamps around every power of ten and multiple of 10^7, up to the largest safe integer', () => {
    const ts = [0, 1, 9, 10, 999_999, 1_000_000, 9_999_999, 10_000_000, 10_000_001, 19_999_999, 20_000_000, 1732200000000, 1732199999999, 1732210000000];
    for (let e = 7; e <= 15; e++) for (const d of [-1, 0, 1]) ts.push(10 ** e + d, 3 * 10 ** e + d);
    ts.push(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - 1, 2 ** 52, 2 ** 52 - 1);
    for (const t of ts) for (const seq of [1, 999_999, 1_000_000, 1_000_001, 123_456_789]) same('gw', { seq, dev: 'd', ts: t, vals: { x: 1 } });
    // a later line with a different high part after the memo was filled
    same('gw', { seq: 5, dev: 'd', ts: 1732200000123, vals: { x: 1 } });
    same('gw', { seq: 5, dev: 'd', ts: 99_999_999_999, vals: { x: 1 } });
    same('gw', { seq: 5, dev: 'd', ts: 1732200000123, dseq: 0, vals: { x: 1 } });
  });

  it('names that need escaping, or escape to nothing, and values of every kind', () => {
    for (const gw of ['gw', 'g w', 'g,w', '\\', 'g\\', 'x=y']) {
      for (const dev of ['d', 'd 1', 'd,=', '\\\\', 'd\n']) {
        same(gw, { seq: 1, dev, ts: 1732200000123, vals: { 'a b': 1.5, '\\': 2, ok: true, neg: -0, big: 1e21, tiny: 5e-324, int: -7 } });
        same(gw, { seq: 2, dev, ts: 1732200000123, vals: { f: false }, tags: { room: 'a 1', '\\': 'x', z: '\\', device: 'nope', gateway: 'nope' } });
      }
    }
    expect(() => rawToLine('gw', { seq: 1, dev: 'd', ts: 1, vals: { '\\': 1 } })).toThrow(expect.objectContaining({ code: 'SLUICE_BAD_BATCH' }));
    expect(() => rawToLine('gw', { seq: 1, dev: 'd', ts: 1, vals: { x: Number.NaN } })).toThrow(expect.objectContaining({ code: 'SLUICE_BAD_BATCH' }));
  });

  it('more distinct gateways, devices and metrics than the caches hold', () => {
    for (let i = 0; i < 120_000; i++) {
      const r: RawRecord = { seq: i + 1, dev: `dev-${i}`, ts: 1732200000000 + i * 977, vals: { [`m${i % 60_011}`]: i / 3, t: i } };
      const gw = `gw-${i % 3}`;
      if (i % 1000 === 0 || i > 119_000) same(gw, r);
      else rawToLine(gw, r);
    }
    // the first ones again, after their entries were dropped
    for (let i = 0; i < 50; i++) same(`gw-${i % 3}`, { seq: i + 1, dev: `dev-${i}`, ts: 1732200000000 + i, vals: { [`m${i}`]: i } });
  });
});

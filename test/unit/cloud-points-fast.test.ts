/** The ingest hot path `rawToLine` must produce exactly what the general builder produces. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toLine } from '../../cloud/line-protocol.js';
import { decimal, rawToLine, rawToPoint } from '../../cloud/points.js';
import type { RawRecord } from '../../protocols/batch.js';

const name = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.-]{0,10}$/).filter((s) => !['time', 'gateway', 'device'].includes(s));
const record: fc.Arbitrary<RawRecord> = fc.record(
  {
    seq: fc.integer({ min: 1, max: 2 ** 40 }),
    dev: fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/),
    ts: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 9_007_199_254_740 })),
    vals: fc.dictionary(name, fc.oneof(fc.boolean(), fc.double({ noNaN: true, noDefaultInfinity: true })), { minKeys: 1, maxKeys: 5 }),
    tags: fc.dictionary(name, fc.string({ minLength: 1, maxLength: 12 }), { maxKeys: 3 }),
    dseq: fc.integer({ min: 0, max: 2 ** 40 }),
  },
  { requiredKeys: ['seq', 'dev', 'ts', 'vals'] },
);

describe('rawToLine', () => {
  it('equals toLine(rawToPoint()) for any record', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9_.-]{1,10}$/), record, (gw, r) => {
        expect(rawToLine(gw, r)).toBe(toLine(rawToPoint(gw, r)));
      }),
      { numRuns: 3000 },
    );
  });

  it('keeps two readings of one device in one millisecond apart, and a replay identical', () => {
    const a = rawToLine('g', { seq: 7, dev: 'd', ts: 1732200000123, vals: { t: 1 } });
    const b = rawToLine('g', { seq: 8, dev: 'd', ts: 1732200000123, vals: { t: 2 } });
    expect(a.split(' ')[2]).toBe('1732200000123000007');
    expect(b.split(' ')[2]).toBe('1732200000123000008');
    expect(rawToLine('g', { seq: 7, dev: 'd', ts: 1732200000123, vals: { t: 1 } })).toBe(a);
  });
});

describe('decimal (String(v) for the numbers sensors send)', () => {
  /** The values among `vs` that decimal writes differently from String. */
  const wrong = (vs: Iterable<number>) => [...vs].filter((v) => decimal(v) !== String(v)).map((v) => `${v}: ${decimal(v)}`);

  it('writes every value with up to 4 decimals in ±200 (and their neighbours) exactly as String(v)', () => {
    const bad: string[] = [];
    for (let i = -2_000_000; i <= 2_000_000; i += 7) {
      // i * 0.01 is not the double nearest i/100 for some i: it must fall through, not be rounded.
      bad.push(...wrong([i / 10_000, i / 1000, i / 100, i / 10, i * 0.01, i / 3]));
    }
    expect(bad.slice(0, 5)).toEqual([]);
  });

  it('equals String(v) for any double, for rounded sensor values, and at the edges', () => {
    fc.assert(fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (v) => decimal(v) === String(v)), { numRuns: 20_000 });
    fc.assert(
      fc.property(fc.double({ min: -2e6, max: 2e6, noNaN: true }), fc.integer({ min: 0, max: 6 }), (x, k) => {
        const v = Math.round(x * 10 ** k) / 10 ** k;
        return decimal(v) === String(v);
      }),
      { numRuns: 20_000 },
    );
    expect(wrong([0, -0, 1e-7, 5e-5, 0.0001, -0.0001, 0.00015, 999_999.9999, -999_999.9999, 1e6, -1e6, 1e21, 123456.7891, 0.1 + 0.2, 4.35, 1.005])).toEqual([]);
  });
});

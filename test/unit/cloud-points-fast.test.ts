/** The ingest hot path `rawToLine` must produce exactly what the general builder produces. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toLine } from '../../cloud/line-protocol.js';
import { rawToLine, rawToPoint } from '../../cloud/points.js';
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

/**
 * The log's raw-record encoder (hand-written, the ingest hot path) against cbor-x, which wrote
 * every record before it: both must decode to the same record, so old and new logs read alike.
 */
import { Encoder } from 'cbor-x';
import fc from 'fast-check';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry, recordKey, seqOfKey, type LogEntry } from '../../gateway/log-codec.js';

const cborx = new Encoder({ useRecords: false } as ConstructorParameters<typeof Encoder>[0]);

/** What encodeEntry wrote for a raw reading before the hand-written encoder. */
function legacyRaw(e: Extract<LogEntry, { kind: 'raw' }>): Buffer {
  const body = cborx.encode([0, e.dev, e.ts, e.vals, e.tags ?? null, e.dseq ?? null, e.fl ?? 0]);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(crc32(body), 0);
  out.set(body, 4);
  return out;
}

const name = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/);
const num = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.constantFrom(0, -0, 2 ** 32 - 1, 2 ** 32, -(2 ** 32), -(2 ** 32) - 1, 2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, 1732200000123, 21.5, 0.1),
);
const raw = fc.record(
  {
    dev: fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/),
    ts: fc.oneof(fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.constant(1732200000123)),
    vals: fc.dictionary(name, fc.oneof(num, fc.boolean()), { minKeys: 1, maxKeys: 30 }),
    tags: fc.dictionary(name, fc.string({ unit: 'grapheme', minLength: 1, maxLength: 128 }), { minKeys: 1, maxKeys: 16 }),
    dseq: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
    fl: fc.nat({ max: 255 }),
  },
  { requiredKeys: ['dev', 'ts', 'vals'] },
);

describe('log codec', () => {
  it('a raw record decodes the same from the hand-written encoder as from cbor-x', () => {
    fc.assert(
      fc.property(raw, (r) => {
        const e = { kind: 'raw' as const, ...r };
        const mine = encodeEntry(e);
        const legacy = legacyRaw(e);
        expect(decodeEntry(7, mine)).toStrictEqual(decodeEntry(7, legacy));
        expect(mine.length).toBeLessThanOrEqual(legacy.length);
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps -0, large integers and floats exactly as cbor-x did', () => {
    const e = { kind: 'raw' as const, dev: 'd', ts: 1732200000123, vals: { a: -0, b: 2 ** 40, c: 21.37, d: -(2 ** 33), e: true } };
    expect(decodeEntry(1, encodeEntry(e))).toStrictEqual(decodeEntry(1, legacyRaw(e)));
  });

  it('a flipped byte is reported as corrupt', () => {
    const v = encodeEntry({ kind: 'raw', dev: 'd', ts: 1, vals: { x: 1 } });
    v[v.length - 2] ^= 0xff;
    expect(() => decodeEntry(3, v)).toThrow(expect.objectContaining({ code: 'SLUICE_LOG_CORRUPT' }));
  });

  it('record keys order by sequence and round-trip', () => {
    for (const n of [0, 1, 255, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 123, Number.MAX_SAFE_INTEGER]) {
      const ref = Buffer.alloc(9);
      ref[0] = 0x72;
      ref.writeBigUInt64BE(BigInt(n), 1);
      expect(recordKey(n)).toEqual(ref);
      expect(seqOfKey(recordKey(n))).toBe(n);
    }
  });
});

/**
 * The log's storage format (gateway/log-codec.ts): frames of checksummed records whose CBOR maps
 * are copied into batches as they are. Held against cbor-x and against the format of older
 * versions (one cbor-x array per LevelDB entry), which a log written before the upgrade still holds.
 */
import { Encoder } from 'cbor-x';
import fc from 'fast-check';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { cborDecoder, cborEncoder, cborInt } from '../../protocols/cbor.js';
import { decodeBatch, encodeBatch, encodeBatchEnvelope, envelopeBytes, FLAG_CLOCK_UNSYNCED, type AggRecord, type RawRecord } from '../../protocols/batch.js';
import {
  decodeEntry,
  decodeWire,
  encodeBatchBody,
  encodeFrame,
  encodeRecord,
  FRAME_HEAD,
  FRAME_OVERHEAD,
  parseEntry,
  recordKey,
  seqOfKey,
  type CorruptPiece,
  type LogEntry,
  type WireRecord,
} from '../../gateway/log-codec.js';

const cborx = new Encoder({ useRecords: false } as ConstructorParameters<typeof Encoder>[0]);

/** What a log entry held for a raw reading before 0.2 (one record per LevelDB entry). */
function legacyRaw(e: Extract<LogEntry, { kind: 'raw' }>): Buffer {
  const body = cborx.encode([0, e.dev, e.ts, e.vals, e.tags ?? null, e.dseq ?? null, e.fl ?? 0]);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(crc32(body), 0);
  out.set(body, 4);
  return out;
}

function frameOf(seqs: number[], entries: LogEntry[]): Buffer {
  const pieces = entries.map((e, i) => encodeRecord(seqs[i], e));
  return encodeFrame(pieces, 0, pieces.length, pieces.reduce((n, p) => n + p.length, 0));
}

function parse(keySeq: number, value: Buffer, after = 0): { ok: WireRecord[]; bad: CorruptPiece[] } {
  const ok: WireRecord[] = [];
  const bad: CorruptPiece[] = [];
  parseEntry(keySeq, value, after, ok, bad);
  return { ok, bad };
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
const seq = fc.oneof(fc.integer({ min: 1, max: 2 ** 32 + 5 }), fc.constant(Number.MAX_SAFE_INTEGER - 1));

describe('log codec', () => {
  it('a raw record reads back as it was written, and as the same record older versions stored', () => {
    fc.assert(
      fc.property(raw, seq, (r, s) => {
        const e = { kind: 'raw' as const, ...r };
        const { ok, bad } = parse(s, frameOf([s], [e]), s - 1);
        expect(bad).toEqual([]);
        expect(ok).toHaveLength(1);
        expect(ok[0].seq).toBe(s);
        expect(ok[0].fl).toBe(r.fl ?? 0);
        expect(decodeWire(ok[0])).toStrictEqual(decodeEntry(s, legacyRaw(e)));
      }),
      { numRuns: 1000 },
    );
  });

  it('keeps -0, large integers and floats exactly', () => {
    const e = { kind: 'raw' as const, dev: 'd', ts: 1732200000123, vals: { a: -0, b: 2 ** 40, c: 21.37, d: -(2 ** 33), e: true } };
    const { ok } = parse(9, frameOf([9], [e]), 0);
    expect(decodeWire(ok[0])).toStrictEqual(decodeEntry(9, legacyRaw(e)));
  });

  it('an aggregate reads back as it was written', () => {
    const a: Extract<LogEntry, { kind: 'agg' }> = { kind: 'agg', dev: 'd1', win: '1m', start: 1732200000000, end: 1732200060000, rev: 2, aggs: { t: { count: 3, min: 1, max: 3, mean: 2, sum: 6, last: 3 } } };
    const { ok } = parse(5, frameOf([5], [a]), 0);
    expect(ok[0].kind).toBe('agg');
    expect(decodeWire(ok[0])).toStrictEqual({ ...a, seq: 5 });
  });

  it('legacy entries (one record per entry) still read, with their size', () => {
    const e = { kind: 'raw' as const, dev: 'd', ts: 1732200000123, vals: { x: 1.5 }, dseq: 7 };
    const v = legacyRaw(e);
    const { ok, bad } = parse(42, v, 0);
    expect(bad).toEqual([]);
    expect(ok[0].seq).toBe(42);
    expect(ok[0].size).toBe(9 + v.length + 8);
    expect(decodeWire(ok[0])).toStrictEqual(decodeEntry(42, v));
    // at or below the position asked for: skipped
    expect(parse(42, v, 42).ok).toEqual([]);
    // a flipped byte: reported, not thrown
    v[v.length - 2] ^= 0xff;
    expect(parse(42, v, 0).bad).toMatchObject([{ seq: 42, records: 1, reason: expect.stringMatching(/checksum/) }]);
  });

  it('a frame: records after the position asked for, sizes adding up to the frame', () => {
    const entries = Array.from({ length: 10 }, (_, i) => ({ kind: 'raw' as const, dev: `d${i}`, ts: 1000 + i, vals: { v: i } }));
    const seqs = entries.map((_, i) => 101 + i);
    const frame = frameOf(seqs, entries);
    const all = parse(110, frame, 0).ok;
    expect(all.map((r) => r.seq)).toEqual(seqs);
    expect(all.reduce((n, r) => n + r.size, 0)).toBe(frame.length - FRAME_HEAD + FRAME_OVERHEAD);
    expect(parse(110, frame, 104).ok.map((r) => r.seq)).toEqual([105, 106, 107, 108, 109, 110]);
  });

  it('a byte flipped inside one record of a frame: that record reported with its sequence, the others read', () => {
    const entries = Array.from({ length: 6 }, (_, i) => ({ kind: 'raw' as const, dev: 'd', ts: 1000 + i, vals: { v: i } }));
    for (const victim of [0, 2, 5]) {
      const frame = frameOf([11, 12, 13, 14, 15, 16], entries);
      const target = parse(16, frame, 0).ok[victim];
      frame[target.end - 1] ^= 0x5a;
      const { ok, bad } = parse(16, frame, 0);
      expect(bad).toMatchObject([{ seq: 11 + victim, records: 1, reason: 'checksum mismatch' }]);
      expect(ok.map((r) => r.seq)).toEqual([11, 12, 13, 14, 15, 16].filter((s) => s !== 11 + victim));
    }
    // a damaged sequence field does not fool it: the sequence is inferred from the neighbours
    const frame = frameOf([11, 12, 13], entries.slice(0, 3));
    const second = parse(13, frame, 0).ok[1];
    frame[second.start + 8 + 7] ^= 0xff;
    expect(parse(13, frame, 0).bad).toMatchObject([{ seq: 12 }]);
  });

  it('damaged framing: the rest of the frame is one damaged piece, counted by the frame header', () => {
    const entries = Array.from({ length: 5 }, (_, i) => ({ kind: 'raw' as const, dev: 'd', ts: 1000 + i, vals: { v: i } }));
    const frame = frameOf([1, 2, 3, 4, 5], entries);
    const third = parse(5, frame, 0).ok[2];
    frame.writeUInt32BE(0xfffffff, third.start);
    const { ok, bad } = parse(5, frame, 0);
    expect(ok.map((r) => r.seq)).toEqual([1, 2]);
    expect(bad).toMatchObject([{ seq: 3, records: 3 }]);
  });

  it('a batch body built from stored bytes decodes to exactly the batch encodeBatch makes', () => {
    const rawRec = fc.record(
      {
        dev: fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/),
        ts: fc.oneof(fc.nat({ max: 2 ** 48 }), fc.constant(1732200000123)),
        vals: fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_]{0,20}$/), fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer(), fc.boolean()), { minKeys: 1, maxKeys: 5 }),
        tags: fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_]{0,20}$/), fc.stringMatching(/^[A-Za-z0-9 é-]{1,20}$/), { minKeys: 1, maxKeys: 3 }),
        dseq: fc.nat({ max: 2 ** 40 }),
        fl: fc.constantFrom(1, 4, 8),
      },
      { requiredKeys: ['dev', 'ts', 'vals'] },
    );
    fc.assert(
      fc.property(fc.array(rawRec, { minLength: 0, maxLength: 20 }), fc.integer({ min: 1, max: 2 ** 33 }), (recs, first) => {
        const entries: LogEntry[] = recs.map((r) => ({ kind: 'raw', ...r }));
        const agg: Extract<LogEntry, { kind: 'agg' }> = { kind: 'agg', dev: 'x', win: '1m', start: 1732200000000, end: 1732200060000, rev: 0, aggs: { t: { count: 1, mean: 2 } } };
        entries.splice(Math.floor(entries.length / 2), 0, agg);
        const seqs = entries.map((_, i) => first + i);
        const wires = parse(seqs[seqs.length - 1], frameOf(seqs, entries), first - 1).ok;
        const meta = { gw: 'g1', inc: 'abc', first, last: seqs[seqs.length - 1] };
        const mine = decodeBatch(encodeBatchEnvelope(meta, encodeBatchBody(wires)));
        const decoded = wires.map(decodeWire);
        const reference = decodeBatch(
          encodeBatch({
            ...meta,
            recs: decoded.filter((r): r is Extract<typeof r, { kind: 'raw' }> => r.kind === 'raw').map(({ kind: _k, ...r }) => r as RawRecord),
            aggs: decoded.filter((r): r is Extract<typeof r, { kind: 'agg' }> => r.kind === 'agg').map(({ kind: _k, ...r }) => r as AggRecord),
          }),
        );
        expect(mine).toStrictEqual(reference);
      }),
      { numRuns: 300 },
    );
  });

  it('array headers of every size: 0, 23, 24, 255, 256 and 65,536 records, aggregates among them', () => {
    for (const n of [0, 23, 24, 255, 256, 65_536]) {
      const entries: LogEntry[] = Array.from({ length: n }, (_, i) => ({ kind: 'raw', dev: `d${i % 10}`, ts: 1732200000000 + i, vals: { v: i } }));
      entries.splice(n >> 1, 0, { kind: 'agg', dev: 'x', win: '1m', start: 1732200000000, end: 1732200060000, rev: 0, aggs: { v: { count: 1, mean: 1 } } });
      const seqs = entries.map((_, i) => 1 + i);
      const wires: WireRecord[] = [];
      // frames of at most FRAME_MAX_BYTES, as the log writes them
      for (let i = 0; i < entries.length; i += 300) parseEntry(Math.min(i + 300, entries.length), frameOf(seqs.slice(i, i + 300), entries.slice(i, i + 300)), 0, wires, []);
      const b = decodeBatch(encodeBatchEnvelope({ gw: 'g', inc: 'i', first: 1, last: entries.length }, encodeBatchBody(wires)), { maxBytes: 64 * 1024 * 1024 });
      expect(b.recs).toHaveLength(n);
      expect(b.aggs).toHaveLength(1);
      expect(b.recs.map((r) => r.seq)).toEqual(seqs.filter((s) => s !== (n >> 1) + 1));
      if (n > 0) expect(b.recs[n - 1]).toEqual({ seq: n + 1, dev: `d${(n - 1) % 10}`, ts: 1732200000000 + n - 1, vals: { v: n - 1 } });
    }
  });

  it('integers go out as CBOR integers (uint64 for a millisecond timestamp), as the batch encoder writes them', () => {
    const { ok } = parse(2 ** 33, frameOf([2 ** 33], [{ kind: 'raw', dev: 'd', ts: 1732200000123, vals: { v: 1 }, dseq: 2 ** 35 }]), 0);
    const body = encodeBatchBody(ok);
    const reference = cborEncoder.encode({ recs: [{ seq: cborInt(2 ** 33), dev: 'd', ts: cborInt(1732200000123), vals: { v: 1 }, dseq: cborInt(2 ** 35) }], aggs: [] });
    expect(cborDecoder.decode(body)).toStrictEqual(cborDecoder.decode(reference));
    // 0x1b: uint64 for ts and dseq and seq, no float64 (0xfb) anywhere
    expect(body.includes(0xfb)).toBe(false);
    expect(body.filter((b) => b === 0x1b).length).toBeGreaterThanOrEqual(3);
  });

  it('only records stamped on an unsynchronised clock are handed to restamp()', () => {
    const entries: LogEntry[] = [
      { kind: 'raw', dev: 'a', ts: 1000, vals: { v: 1 } },
      { kind: 'raw', dev: 'b', ts: 2000, vals: { v: 2 }, fl: FLAG_CLOCK_UNSYNCED | 1 },
    ];
    const wires = parse(2, frameOf([1, 2], entries), 0).ok;
    const seen: number[] = [];
    const body = encodeBatchBody(wires, (r) => {
      seen.push(r.seq);
      return { ...r, ts: r.ts + 5000, fl: 1 };
    });
    expect(seen).toEqual([2]);
    const decoded = cborDecoder.decode(body) as { recs: RawRecord[] };
    expect(decoded.recs).toEqual([
      { seq: 1, dev: 'a', ts: 1000, vals: { v: 1 } },
      { seq: 2, dev: 'b', ts: 7000, vals: { v: 2 }, fl: 1 },
    ]);
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

describe('batch envelope', () => {
  it('is byte for byte what cbor-x writes for the envelope map', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 70_000 }), fc.nat({ max: 2 ** 40 }), fc.nat({ max: 100 }), (bytes, first, n) => {
        // a Buffer, as the forwarder passes (cbor-x tags a bare Uint8Array as a typed array)
        const body = Buffer.from(bytes);
        const meta = { gw: 'gw-1', inc: 'a1b2', first: first + 1, last: first + 1 + n };
        const reference = Buffer.from(cborEncoder.encode({ v: 1, ...meta, first: cborInt(meta.first), last: cborInt(meta.last), body, crc: crc32(body) }));
        expect(encodeBatchEnvelope(meta, body).equals(reference)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('written into a reused buffer (the forwarder\'s pool) is the same bytes; a buffer too small is not used', () => {
    const longest = { gw: 'g'.repeat(64), inc: 'i'.repeat(64), first: 2 ** 52, last: 2 ** 53 - 1 };
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 20_000 }), fc.uint8Array({ minLength: 0, maxLength: 20_000 }), (a, b) => {
        const into = Buffer.alloc(envelopeBytes(20_000), 0xee);
        for (const body of [Buffer.from(a), Buffer.from(b)]) {
          const bytes = encodeBatchEnvelope(longest, body, into);
          expect(bytes.buffer).toBe(into.buffer);
          expect(bytes.equals(encodeBatchEnvelope(longest, body))).toBe(true);
        }
      }),
      { numRuns: 50 },
    );
    const small = Buffer.alloc(10);
    const bytes = encodeBatchEnvelope(longest, Buffer.alloc(100), small);
    expect(bytes.buffer).not.toBe(small.buffer);
    expect(bytes.equals(encodeBatchEnvelope(longest, Buffer.alloc(100)))).toBe(true);
  });
});

/**
 * Batch v1: a defective batch is refused with SLUICE_BAD_BATCH, SLUICE_BAD_CHECKSUM,
 * SLUICE_UNSUPPORTED_VERSION or SLUICE_TOO_LARGE, never half-accepted.
 */
import { crc32 } from 'node:zlib';
import { Decoder, Encoder } from 'cbor-x';
import { describe, expect, it } from 'vitest';
import { decodeBatch, encodeBatch, validateAggRecord, validateRawRecord, type AggRecord, type Batch, type RawRecord } from '../../protocols/batch.js';
import { isSluiceError, type SluiceErrorCode } from '../../protocols/errors.js';

const TS = 1732200000123;
const cbor = new Encoder({ useRecords: false } as ConstructorParameters<typeof Encoder>[0]);
const cborDecoder = new Decoder({ useRecords: false, mapsAsObjects: true } as ConstructorParameters<typeof Decoder>[0]);

const rec = (seq: number, extra: Partial<RawRecord> = {}): RawRecord => ({ seq, dev: 'd1', ts: TS + seq, vals: { t: seq }, ...extra });
const agg = (seq: number, extra: Partial<AggRecord> = {}): AggRecord => ({
  seq,
  dev: 'd1',
  win: '1m',
  start: 1732199940000,
  end: 1732200000000,
  rev: 0,
  aggs: { t: { count: 2, min: 1, max: 2, mean: 1.5, sum: 3, last: 2 } },
  ...extra,
});
const good = (): Batch => ({ v: 1, gw: 'gw1', inc: 'inc-1', first: 1, last: 5, recs: [rec(1), rec(2), rec(4)], aggs: [agg(5)] });

/** Builds an envelope by hand: any field may be overridden or removed (undefined), crc stays right. */
function envelope(over: Record<string, unknown> = {}, body: unknown = { recs: [rec(1)], aggs: [] }): Buffer {
  const bodyBytes = body instanceof Uint8Array ? body : cbor.encode(body);
  const env: Record<string, unknown> = { v: 1, gw: 'gw1', inc: 'inc-1', first: 1, last: 1, body: bodyBytes, crc: crc32(bodyBytes), ...over };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return Buffer.from(cbor.encode(env));
}

function failure(buf: Uint8Array, opts?: { maxBytes?: number }): { code: SluiceErrorCode; message: string } {
  try {
    decodeBatch(buf, opts);
  } catch (err) {
    if (!isSluiceError(err)) throw err;
    return { code: err.code, message: err.message };
  }
  throw new Error('expected the batch to be rejected');
}

const bodyFail = (body: unknown, over: Record<string, unknown> = {}) => failure(envelope({ first: 1, last: 10, ...over }, body));

describe('decodeBatch accepts', () => {
  it('what encodeBatch writes', () => {
    const b = good();
    expect(decodeBatch(encodeBatch(b))).toStrictEqual(b);
  });

  it('an empty range, records with gaps, and the hand-built envelope', () => {
    expect(decodeBatch(encodeBatch({ gw: 'g', inc: 'i', first: 9, last: 20, recs: [], aggs: [] })).recs).toEqual([]);
    expect(decodeBatch(envelope()).recs).toEqual([rec(1)]);
  });

  it('optional record fields and a boolean "last" aggregate', () => {
    const b: Batch = { ...good(), recs: [rec(1, { tags: { room: 'a1' }, dseq: 0, fl: 5 })], aggs: [agg(2, { aggs: { door: { count: 1, mean: 1, last: true } } })] };
    expect(decodeBatch(encodeBatch(b))).toStrictEqual(b);
  });
});

describe('decodeBatch rejects the envelope', () => {
  it.each([
    ['empty', Buffer.alloc(0)],
    ['not CBOR', Buffer.from('{"v":1}')],
    ['truncated', encodeBatch(good()).subarray(0, 30)],
    ['trailing bytes', Buffer.concat([encodeBatch(good()), Buffer.from([0])])],
    ['an array', Buffer.from(cbor.encode([1, 2]))],
    ['a byte string', Buffer.from(cbor.encode(Buffer.from('abc')))],
  ])('bad CBOR or shape: %s', (_name, buf) => {
    expect(failure(buf).code).toBe('SLUICE_BAD_BATCH');
  });

  it('every truncation of a valid batch', () => {
    const full = encodeBatch(good());
    for (let n = 1; n < full.length; n++) expect(['SLUICE_BAD_BATCH', 'SLUICE_BAD_CHECKSUM']).toContain(failure(full.subarray(0, n)).code);
  });

  it('a missing, malformed or other version', () => {
    expect(failure(envelope({ v: undefined })).message).toMatch(/"v"/);
    expect(failure(envelope({ v: '1' })).code).toBe('SLUICE_BAD_BATCH');
    const v2 = failure(envelope({ v: 2 }));
    expect(v2.code).toBe('SLUICE_UNSUPPORTED_VERSION');
    expect(v2.message).toMatch(/version 2/);
    expect(failure(envelope({ v: 0 })).code).toBe('SLUICE_UNSUPPORTED_VERSION');
    // The version is checked before anything else a later version might change.
    expect(failure(envelope({ v: 2, gw: 7, body: 'x' })).code).toBe('SLUICE_UNSUPPORTED_VERSION');
  });

  it.each([undefined, '', 'gw/1', 'g w', 'x'.repeat(65), 42, '+'])('a bad gateway id %j', (gw) => {
    const f = failure(envelope({ gw }));
    expect(f.code).toBe('SLUICE_BAD_BATCH');
    expect(f.message).toMatch(/"gw"/);
  });

  it.each([undefined, '', 'x'.repeat(65), 7])('a bad incarnation %j', (inc) => {
    expect(failure(envelope({ inc })).message).toMatch(/"inc"/);
  });

  it('bad first/last', () => {
    expect(failure(envelope({ first: 0, last: 1 })).message).toMatch(/"first"/);
    expect(failure(envelope({ first: -1 })).message).toMatch(/"first"/);
    expect(failure(envelope({ first: 1.5 })).message).toMatch(/"first"/);
    expect(failure(envelope({ first: '1' })).message).toMatch(/"first"/);
    expect(failure(envelope({ first: undefined })).message).toMatch(/"first"/);
    expect(failure(envelope({ first: 5, last: 4 })).message).toMatch(/"last"/);
    expect(failure(envelope({ last: undefined })).message).toMatch(/"last"/);
  });

  it('a body that is not a byte string, or a crc that is not a number', () => {
    expect(failure(envelope({ body: { recs: [], aggs: [] } })).message).toMatch(/"body"/);
    expect(failure(envelope({ crc: undefined })).message).toMatch(/"crc"/);
    expect(failure(envelope({ crc: '0' })).message).toMatch(/"crc"/);
  });

  it('a checksum mismatch: any flipped byte of the body, or a wrong crc', () => {
    const b = good();
    const bytes = encodeBatch(b);
    const body = (cborDecoder.decode(bytes) as { body: Buffer }).body;
    const at = bytes.indexOf(body);
    expect(at).toBeGreaterThan(0);
    for (let i = 0; i < body.length; i++) {
      const copy = Buffer.from(bytes);
      copy[at + i] ^= 0x01;
      expect(failure(copy).code).toBe('SLUICE_BAD_CHECKSUM');
    }
    expect(failure(envelope({ crc: 1 })).code).toBe('SLUICE_BAD_CHECKSUM');
  });

  it('a body that passes the checksum but is not valid CBOR or lacks recs/aggs', () => {
    expect(failure(envelope({}, Buffer.from([0xa2, 0x01]))).message).toMatch(/body/);
    expect(bodyFail({ recs: [] }).message).toMatch(/"aggs"/);
    expect(bodyFail({ aggs: [] }).message).toMatch(/"recs"/);
    expect(bodyFail({ recs: {}, aggs: [] }).code).toBe('SLUICE_BAD_BATCH');
    expect(bodyFail([]).code).toBe('SLUICE_BAD_BATCH');
  });

  it('too large, before decoding', () => {
    const bytes = encodeBatch(good());
    expect(failure(bytes, { maxBytes: bytes.length - 1 }).code).toBe('SLUICE_TOO_LARGE');
    expect(decodeBatch(bytes, { maxBytes: bytes.length }).first).toBe(1);
    expect(failure(Buffer.alloc(16 * 1024 * 1024 + 1)).code).toBe('SLUICE_TOO_LARGE');
  });
});

describe('decodeBatch rejects records', () => {
  it('records out of order, repeated, or outside [first, last]', () => {
    expect(bodyFail({ recs: [rec(2), rec(1)], aggs: [] }).message).toMatch(/recs\[1\]\.seq/);
    expect(bodyFail({ recs: [rec(2), rec(2)], aggs: [] }).message).toMatch(/recs\[1\]\.seq/);
    expect(bodyFail({ recs: [rec(11)], aggs: [] }).message).toMatch(/recs\[0\]\.seq/);
    expect(failure(envelope({ first: 5, last: 10 }, { recs: [rec(4)], aggs: [] })).message).toMatch(/recs\[0\]\.seq/);
    expect(bodyFail({ recs: [], aggs: [agg(11)] }).message).toMatch(/aggs\[0\]\.seq/);
    expect(failure(envelope({ first: 5, last: 10 }, { recs: [], aggs: [agg(4)] })).message).toMatch(/aggs\[0\]\.seq/);
  });

  it('a sequence number used by a record and an aggregate, or by two aggregates', () => {
    expect(bodyFail({ recs: [rec(3)], aggs: [agg(3)] }).message).toMatch(/aggs\[0\]\.seq 3/);
    expect(bodyFail({ recs: [], aggs: [agg(4), agg(4)] }).message).toMatch(/aggs\[1\]\.seq 4/);
  });

  it.each([
    ['not a map', 5, /recs\[0\]/],
    ['seq 0', rec(0), /recs\[0\]\.seq/],
    ['seq as string', { ...rec(1), seq: '1' }, /recs\[0\]\.seq/],
    ['no dev', { ...rec(1), dev: undefined }, /recs\[0\]\.dev/],
    ['bad dev', rec(1, { dev: 'a/b' }), /recs\[0\]\.dev/],
    ['negative ts', rec(1, { ts: -1 }), /recs\[0\]\.ts/],
    ['float ts', rec(1, { ts: 1.5 }), /recs\[0\]\.ts/],
    ['string ts', { ...rec(1), ts: '1' }, /recs\[0\]\.ts/],
    ['no vals', { ...rec(1), vals: undefined }, /recs\[0\]\.vals/],
    ['empty vals', rec(1, { vals: {} }), /recs\[0\]\.vals/],
    ['string value', { ...rec(1), vals: { t: '1' } }, /recs\[0\]\.vals\.t/],
    ['NaN value', rec(1, { vals: { t: NaN } }), /recs\[0\]\.vals\.t/],
    ['bad metric name', rec(1, { vals: { '1t': 1 } }), /recs\[0\]\.vals/],
    ['reserved metric name', rec(1, { vals: { time: 1 } }), /recs\[0\]\.vals/],
    ['tags not a map', { ...rec(1), tags: 'a' }, /recs\[0\]\.tags/],
    ['empty tag value', rec(1, { tags: { room: '' } }), /recs\[0\]\.tags/],
    ['reserved tag key', rec(1, { tags: { device: 'x' } }), /recs\[0\]\.tags/],
    ['long tag value', rec(1, { tags: { room: 'x'.repeat(129) } }), /recs\[0\]\.tags/],
    ['negative dseq', rec(1, { dseq: -1 }), /recs\[0\]\.dseq/],
    ['float fl', rec(1, { fl: 0.5 }), /recs\[0\]\.fl/],
  ])('bad record field: %s', (_name, r, message) => {
    const f = bodyFail({ recs: [r], aggs: [] });
    expect(f.code).toBe('SLUICE_BAD_BATCH');
    expect(f.message).toMatch(message);
  });

  it.each([
    ['not a map', [], /aggs\[0\]/],
    ['seq 0', agg(0), /aggs\[0\]\.seq/],
    ['bad dev', agg(1, { dev: '' }), /aggs\[0\]\.dev/],
    ['bad window name', agg(1, { win: '1 minute' }), /aggs\[0\]\.win/],
    ['end before start', agg(1, { start: 10, end: 10 }), /aggs\[0\]\.start\/end/],
    ['negative rev', agg(1, { rev: -1 }), /aggs\[0\]\.rev/],
    ['no metrics', agg(1, { aggs: {} }), /aggs\[0\]\.aggs/],
    ['reserved metric', agg(1, { aggs: { time: { count: 1, mean: 1 } } }), /aggs\[0\]\.aggs/],
    ['no count', agg(1, { aggs: { t: { mean: 1 } as never } }), /aggs\[0\]\.aggs\.t/],
    ['no mean', agg(1, { aggs: { t: { count: 1 } as never } }), /aggs\[0\]\.aggs\.t/],
    ['NaN mean', agg(1, { aggs: { t: { count: 1, mean: NaN } } }), /aggs\[0\]\.aggs\.t/],
    ['string min', agg(1, { aggs: { t: { count: 1, mean: 1, min: '0' as never } } }), /aggs\[0\]\.aggs\.t\.min/],
    ['infinite sum', agg(1, { aggs: { t: { count: 1, mean: 1, sum: Infinity } } }), /aggs\[0\]\.aggs\.t\.sum/],
    ['string last', agg(1, { aggs: { t: { count: 1, mean: 1, last: 'x' as never } } }), /aggs\[0\]\.aggs\.t\.last/],
  ])('bad aggregate: %s', (_name, a, message) => {
    const f = bodyFail({ recs: [], aggs: [a] });
    expect(f.code).toBe('SLUICE_BAD_BATCH');
    expect(f.message).toMatch(message);
  });
});

describe('validateRawRecord / validateAggRecord', () => {
  it('validate single records for the gateway log', () => {
    expect(validateRawRecord(rec(3))).toStrictEqual(rec(3));
    expect(validateAggRecord(agg(3))).toStrictEqual(agg(3));
    let code: string | undefined;
    try {
      validateRawRecord({ seq: 1 });
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    expect(code).toBe('SLUICE_BAD_BATCH');
  });
});

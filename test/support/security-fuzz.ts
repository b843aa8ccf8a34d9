/**
 * Generators and corpora of hostile input for the fuzz tests: payloads (JSON/CBOR, near-valid
 * shapes, random bytes, mutations of valid documents) and batch bodies (random bytes, CBOR of
 * anything, mutated valid batches, structurally generated envelopes with right or wrong checksums).
 */
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { cborEncoder } from '../../protocols/cbor.js';
import { encodeBatch, type RawRecord } from '../../protocols/batch.js';
import { encodePayload } from '../../protocols/payload.js';

const cbor = (v: unknown): Buffer => Buffer.from(cborEncoder.encode(v));

/** A value of a hostile type, for slots that expect numbers, strings or maps. */
export const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 200 }),
  fc.constantFrom(Number.MAX_SAFE_INTEGER + 2, -0, 1e308, Number.MIN_VALUE, 2 ** 53, -1),
  fc.uint8Array({ maxLength: 16 }),
  fc.array(fc.integer(), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.integer(), { maxKeys: 3 }),
);

const metricName = fc.oneof(
  fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.-]{0,10}$/),
  fc.string({ maxLength: 80 }),
  fc.constantFrom('time', 'gateway', 'device', '_field', '__proto__', 'constructor', 'toString', '', 'a'.repeat(65)),
);

/** Payload-shaped documents: right keys with odd values, odd keys, odd nesting. */
export const payloadDoc: fc.Arbitrary<Record<string, unknown>> = fc.record(
  {
    v: fc.oneof(fc.constant(1), oddValue),
    ts: fc.oneof(fc.integer({ min: 0, max: 2 ** 42 }), oddValue),
    seq: fc.oneof(fc.nat(), oddValue),
    values: fc.oneof(fc.dictionary(metricName, fc.oneof(fc.double(), fc.boolean(), oddValue), { maxKeys: 6 }), oddValue),
    tags: fc.oneof(fc.dictionary(metricName, fc.oneof(fc.string({ maxLength: 140 }), oddValue), { maxKeys: 20 }), oddValue),
    extra: oddValue,
  },
  { requiredKeys: [] },
);

/** Flip, drop, insert or truncate bytes of a buffer. */
export function mutate(base: Buffer): fc.Arbitrary<Buffer> {
  return fc
    .array(
      fc.oneof(
        fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
        fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
        fc.record({ op: fc.constant('cut' as const), at: fc.nat() }),
        fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      ),
      { minLength: 1, maxLength: 4 },
    )
    .map((ops) => {
      let b = Buffer.from(base);
      for (const o of ops) {
        const at = b.length === 0 ? 0 : o.at % b.length;
        if (o.op === 'flip' && b.length > 0) b[at] ^= 1 << o.bit;
        else if (o.op === 'set' && b.length > 0) b[at] = o.byte;
        else if (o.op === 'cut') b = b.subarray(0, at);
        else if (o.op === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from(o.bytes), b.subarray(at)]);
      }
      return b;
    });
}

const validPayloads = [
  encodePayload({ ts: 1_732_200_000_123, values: { temperature: 21.5, door_open: false }, seq: 42, tags: { room: 'a1' } }, 'json'),
  encodePayload({ ts: 1_732_200_000_123, values: { temperature: 21.5, door_open: false }, seq: 42, tags: { room: 'a1' } }, 'cbor'),
  encodePayload({ values: { humidity: 40 } }, 'json'),
];

/** Every kind of generated payload, as bytes. */
export const payloadBytes: fc.Arbitrary<Buffer> = fc.oneof(
  fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
  payloadDoc.map((d) => Buffer.from(JSON.stringify(d, (_k, v) => (typeof v === 'bigint' ? Number(v) : v instanceof Uint8Array ? [...v] : v)) ?? '')),
  payloadDoc.map(cbor),
  fc.anything({ maxDepth: 4, withBigInt: true, withTypedArray: true, withDate: true, withMap: true, withSet: true, withNullPrototype: true }).map((v) => {
    try {
      return cbor(v);
    } catch {
      return Buffer.from([0xa0]);
    }
  }),
  fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
  fc.constantFrom(...validPayloads).chain(mutate),
);

function deep(open: string, close: string, n: number, inner = '1'): Buffer {
  return Buffer.from(open.repeat(n) + inner + close.repeat(n));
}

/** Hand-picked nasty payloads. */
export const PAYLOAD_CORPUS: Array<[string, Buffer]> = [
  ['empty', Buffer.alloc(0)],
  ['whitespace', Buffer.from(' \n\t ')],
  ['BOM only', Buffer.from([0xef, 0xbb, 0xbf])],
  ['null', Buffer.from('null')],
  ['NaN literal', Buffer.from('{"values":{"a":NaN}}')],
  ['Infinity literal', Buffer.from('{"values":{"a":Infinity}}')],
  ['1e400', Buffer.from('{"values":{"a":1e400}}')],
  ['-0', Buffer.from('{"values":{"a":-0}}')],
  ['huge int ts', Buffer.from('{"ts":123456789012345678901234567890,"values":{"a":1}}')],
  ['duplicate keys', Buffer.from('{"values":{"a":1},"values":{"b":"x"}}')],
  ['__proto__ key', Buffer.from('{"values":{"a":1},"__proto__":{"polluted":1}}')],
  ['__proto__ metric', Buffer.from('{"values":{"__proto__":1}}')],
  ['constructor metric', Buffer.from('{"values":{"constructor":{"prototype":{"x":1}}}}')],
  ['invalid utf-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])],
  ['lone surrogate escape', Buffer.from('{"values":{"\\ud800":1}}')],
  ['deep JSON arrays', deep('[', ']', 100_000)],
  ['deep JSON objects', Buffer.from('{"values":' + '{"a":'.repeat(50_000) + '1' + '}'.repeat(50_001))],
  ['deep CBOR arrays', Buffer.concat([Buffer.alloc(60_000, 0x81), Buffer.from([0x01])])],
  ['deep CBOR tags', Buffer.concat([Buffer.alloc(60_000, 0xc6), Buffer.from([0x01])])],
  ['CBOR array of 2^32-1', Buffer.from([0x9a, 0xff, 0xff, 0xff, 0xff])],
  ['CBOR map of 2^64-1', Buffer.from([0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
  ['CBOR byte string longer than input', Buffer.from([0xa1, 0x5a, 0x7f, 0xff, 0xff, 0xff, 0x00])],
  ['CBOR indefinite map never closed', Buffer.from([0xbf, 0x61, 0x61, 0x01])],
  ['CBOR reserved additional info', Buffer.from([0xa1, 0x1c])],
  ['CBOR map with map key', Buffer.from([0xa1, 0xa0, 0x01])],
  ['CBOR undefined', Buffer.from([0xf7])],
  ['CBOR break at top', Buffer.from([0xff])],
  ['CBOR values float16 NaN', Buffer.concat([Buffer.from([0xa1, 0x66]), Buffer.from('values'), Buffer.from([0xa1, 0x61, 0x61, 0xf9, 0x7e, 0x00])])],
  ['CBOR values bigint', Buffer.concat([Buffer.from([0xa1, 0x66]), Buffer.from('values'), Buffer.from([0xa1, 0x61, 0x61, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])])],
  ['CBOR record extension tag', Buffer.from([0xd9, 0xdf, 0xff, 0x83, 0x01, 0x02, 0x03])],
  ['64 KiB + 1', Buffer.alloc(64 * 1024 + 1, 0x20)],
  ['many metrics', Buffer.from(JSON.stringify({ values: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`m${i}`, i])) }))],
  ['long tag value', Buffer.from(JSON.stringify({ values: { a: 1 }, tags: { t: 'x'.repeat(10_000) } }))],
  ['version 2', Buffer.from('{"v":2,"values":{"a":1}}')],
];

// ---- batches ----

export const FUZZ_GW = 'fuzz-gw';

const rawRecord = (seq: number): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.record({ seq: fc.constant(seq), dev: fc.constantFrom('fz-1', 'fz-2'), ts: fc.integer({ min: 1_700_000_000_000, max: 1_800_000_000_000 }), vals: fc.record({ temperature: fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }) }) }) },
    { weight: 1, arbitrary: fc.record({ seq: fc.oneof(fc.constant(seq), oddValue), dev: fc.oneof(fc.string({ maxLength: 70 }), oddValue), ts: oddValue, vals: fc.oneof(fc.dictionary(metricName, oddValue, { maxKeys: 4 }), oddValue), tags: oddValue }, { requiredKeys: [] }) },
  );

/** Structurally generated batch envelopes: mostly plausible, each field sometimes wrong. */
export const batchEnvelope: fc.Arbitrary<Buffer> = fc
  .record({
    n: fc.integer({ min: 0, max: 3 }),
    first: fc.integer({ min: 1, max: 50 }),
    gw: fc.oneof({ weight: 4, arbitrary: fc.constant(FUZZ_GW) }, { weight: 1, arbitrary: fc.constant('other-gw') }, { weight: 1, arbitrary: oddValue }),
    v: fc.oneof({ weight: 6, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: oddValue }),
    inc: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('fz-inc-a', 'fz-inc-b') }, { weight: 1, arbitrary: oddValue }),
    crcOk: fc.boolean(),
    bodyShape: fc.oneof({ weight: 6, arbitrary: fc.constant('ok') }, { weight: 1, arbitrary: oddValue }),
    aggs: fc.oneof({ weight: 6, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.dictionary(fc.string({ maxLength: 6 }), oddValue, { maxKeys: 8 }), { maxLength: 2 }) }),
  })
  .chain((e) =>
    fc.tuple(fc.constant(e), fc.tuple(...Array.from({ length: e.n }, (_, i) => rawRecord(e.first + i)))),
  )
  .map(([e, recs]) => {
    const last = e.first + Math.max(0, e.n - 1);
    const body = e.bodyShape === 'ok' ? cbor({ recs, aggs: e.aggs }) : cbor(e.bodyShape);
    const crc = e.crcOk ? crc32(body) : (crc32(body) + 1) >>> 0;
    try {
      return cbor({ v: e.v, gw: e.gw, inc: e.inc, first: e.first, last, body, crc });
    } catch {
      return Buffer.from([0xa0]);
    }
  });

function validBatch(first: number, n: number, inc = 'fz-inc-valid'): Buffer {
  const recs: RawRecord[] = Array.from({ length: n }, (_, i) => ({ seq: first + i, dev: 'fz-valid', ts: 1_732_700_000_000 + first + i, vals: { temperature: first + i } }));
  return encodeBatch({ gw: FUZZ_GW, inc, first, last: first + n - 1, recs, aggs: [] });
}

/** Every kind of generated batch body. */
export const batchBytes: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
  fc.anything({ maxDepth: 4, withBigInt: true, withTypedArray: true, withMap: true }).map((v) => {
    try {
      return cbor(v);
    } catch {
      return Buffer.from([0xa0]);
    }
  }),
  batchEnvelope,
  fc.constantFrom(validBatch(1, 3), validBatch(5, 1)).chain(mutate),
);

/** Hand-picked nasty batch bodies. */
export const BATCH_CORPUS: Array<[string, Buffer]> = [
  ['empty', Buffer.alloc(0)],
  ['deep CBOR arrays', Buffer.concat([Buffer.alloc(100_000, 0x81), Buffer.from([0x01])])],
  ['deep CBOR in body', cbor({ v: 1, gw: FUZZ_GW, inc: 'x', first: 1, last: 1, body: Buffer.concat([Buffer.alloc(50_000, 0x81), Buffer.from([0x01])]), crc: crc32(Buffer.concat([Buffer.alloc(50_000, 0x81), Buffer.from([0x01])])) })],
  ['array of 2^32-1', Buffer.from([0x9a, 0xff, 0xff, 0xff, 0xff])],
  ['indefinite map never closed', Buffer.from([0xbf, 0x61, 0x76, 0x01])],
  ['version 2', cbor({ v: 2, gw: FUZZ_GW })],
  ['first 0', cbor({ v: 1, gw: FUZZ_GW, inc: 'x', first: 0, last: 0, body: cbor({ recs: [], aggs: [] }), crc: crc32(cbor({ recs: [], aggs: [] })) })],
  ['last < first', cbor({ v: 1, gw: FUZZ_GW, inc: 'x', first: 5, last: 4, body: cbor({ recs: [], aggs: [] }), crc: crc32(cbor({ recs: [], aggs: [] })) })],
  ['seq above 2^53', cbor({ v: 1, gw: FUZZ_GW, inc: 'x', first: 2n ** 60n, last: 2n ** 60n, body: cbor({ recs: [], aggs: [] }), crc: crc32(cbor({ recs: [], aggs: [] })) })],
  ['__proto__ keys', (() => {
    const body = cbor(JSON.parse('{"recs":[{"seq":1,"dev":"d","ts":1,"vals":{"a":1},"__proto__":{"polluted":1}}],"aggs":[],"__proto__":{"polluted":1}}'));
    return cbor({ ...JSON.parse('{"__proto__":{"polluted":1}}'), v: 1, gw: FUZZ_GW, inc: 'x', first: 1, last: 1, body, crc: crc32(body) });
  })()],
  ['record with NaN', (() => {
    const body = cbor({ recs: [{ seq: 1, dev: 'd', ts: 1, vals: { a: Number.NaN } }], aggs: [] });
    return cbor({ v: 1, gw: FUZZ_GW, inc: 'x', first: 1, last: 1, body, crc: crc32(body) });
  })()],
  ['records out of order', (() => {
    const body = cbor({ recs: [{ seq: 2, dev: 'd', ts: 1, vals: { a: 1 } }, { seq: 1, dev: 'd', ts: 1, vals: { a: 1 } }], aggs: [] });
    return cbor({ v: 1, gw: FUZZ_GW, inc: 'x', first: 1, last: 2, body, crc: crc32(body) });
  })()],
  ['JSON instead of CBOR', Buffer.from('{"v":1}')],
];

export { validBatch };

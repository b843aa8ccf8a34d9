/**
 * decodeBatch's fast path (a schema-aware CBOR reader for the batch body, name caches, records read
 * straight into their fields) must decide exactly as the straightforward decoder did: the same
 * batch for every batch it accepts, the same error code and message for every batch it refuses.
 * The oracle below is decodeBatch as it was before (cborDepthExceeds, then cbor-x, then the
 * validators with their regular expressions), copied unchanged; generated bodies cover key order,
 * duplicate and unknown keys, every integer and float width, Unicode and broken UTF-8, the
 * constructs the fast path leaves to cbor-x (tags, byte strings, indefinite lengths, other simple
 * values), and random damage (flipped, cut and inserted bytes) with a matching checksum.
 */
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBatch, DEFAULT_BATCH_MAX_DEPTH, GATEWAY_ID_RE, type AggRecord, type Batch, type RawRecord } from '../../protocols/batch.js';
import { cborDecoder, cborEncoder } from '../../protocols/cbor.js';
import { SluiceError, isSluiceError } from '../../protocols/errors.js';
import { cborDepthExceeds } from '../../protocols/nesting.js';
import { DEFAULT_PAYLOAD_LIMITS, METRIC_NAME_RE, TAG_KEY_RE, type Tags, type Values } from '../../protocols/payload.js';
import { DEVICE_ID_RE, RESERVED_NAMES } from '../../protocols/topic.js';

// ---- The oracle: decodeBatch before the fast path (git cb6f687), unchanged but for its name. ----

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_BATCH', message);
}

function isObj(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x) && !(x instanceof Uint8Array);
}

function isSeq(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function oracleDecodeBatch(buf: Uint8Array, opts: { maxBytes?: number; maxDepth?: number } = {}): Batch {
  const maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  if (buf.length > maxBytes) throw new SluiceError('SLUICE_TOO_LARGE', `batch of ${buf.length} bytes exceeds ${maxBytes} bytes`);
  const maxDepth = opts.maxDepth ?? DEFAULT_BATCH_MAX_DEPTH;
  if (cborDepthExceeds(buf, maxDepth)) throw bad(`batch nests deeper than the limit of ${maxDepth}`);
  let env: unknown;
  try {
    env = cborDecoder.decode(buf);
  } catch (err) {
    throw new SluiceError('SLUICE_BAD_BATCH', `batch is not valid CBOR: ${(err as Error).message}`, { cause: err });
  }
  if (!isObj(env)) throw bad('batch must be a CBOR map');
  if (env.v !== 1) {
    if (typeof env.v === 'number') {
      throw new SluiceError('SLUICE_UNSUPPORTED_VERSION', `batch version ${env.v} is not supported (this cloud reads version ${1})`);
    }
    throw bad(env.v === undefined ? 'batch has no version field "v"' : 'batch field "v" must be the integer version');
  }
  if (typeof env.gw !== 'string' || !GATEWAY_ID_RE.test(env.gw)) throw bad('"gw" must be a gateway id matching [A-Za-z0-9_.-]{1,64}');
  if (typeof env.inc !== 'string' || env.inc.length === 0 || env.inc.length > 64) throw bad('"inc" must be a non-empty incarnation id');
  if (!isSeq(env.first) || env.first < 1) throw bad('"first" must be a positive integer sequence');
  if (!isSeq(env.last) || env.last < env.first) throw bad('"last" must be an integer sequence >= "first"');
  if (!(env.body instanceof Uint8Array)) throw bad('"body" must be a CBOR byte string');
  if (typeof env.crc !== 'number') throw bad('"crc" must be a number');
  if (crc32(env.body) !== env.crc) throw new SluiceError('SLUICE_BAD_CHECKSUM', 'batch checksum mismatch: body corrupted in transit');
  if (cborDepthExceeds(env.body, maxDepth)) throw bad(`batch body nests deeper than the limit of ${maxDepth}`);
  let body: unknown;
  try {
    body = cborDecoder.decode(env.body);
  } catch (err) {
    throw new SluiceError('SLUICE_BAD_BATCH', `batch body is not valid CBOR: ${(err as Error).message}`, { cause: err });
  }
  if (!isObj(body) || !Array.isArray(body.recs) || !Array.isArray(body.aggs)) throw bad('batch body must be a map with "recs" and "aggs" arrays');
  const first = env.first;
  const last = env.last;
  let prev = first - 1;
  const recs = body.recs.map((r, i) => {
    const rec = validateRawRecord(r, `recs[${i}]`);
    if (rec.seq <= prev || rec.seq > last) throw bad(`recs[${i}].seq ${rec.seq} is out of order or outside [${first}, ${last}]`);
    prev = rec.seq;
    return rec;
  });
  const used = new Set(recs.map((r) => r.seq));
  const aggs = body.aggs.map((a, i) => {
    const agg = validateAggRecord(a, `aggs[${i}]`);
    if (agg.seq < first || agg.seq > last) throw bad(`aggs[${i}].seq ${agg.seq} is outside [${first}, ${last}]`);
    if (used.has(agg.seq)) throw bad(`aggs[${i}].seq ${agg.seq} is used twice in the batch`);
    used.add(agg.seq);
    return agg;
  });
  return { v: env.v, gw: env.gw, inc: env.inc, first, last, recs, aggs };
}

function validateValues(x: unknown, where: string): Values {
  if (!isObj(x)) throw bad(`${where}.vals must be a map`);
  const keys = Object.keys(x);
  if (keys.length === 0) throw bad(`${where}.vals is empty`);
  for (const k of keys) {
    if (!METRIC_NAME_RE.test(k) || RESERVED_NAMES.has(k)) throw bad(`${where}.vals has a bad metric name "${k.slice(0, 40)}"`);
    const v = x[k];
    if (typeof v !== 'boolean' && !(typeof v === 'number' && Number.isFinite(v))) throw bad(`${where}.vals.${k} must be a finite number or boolean`);
  }
  return x as Values;
}

function validateRawRecord(r: unknown, where = 'record'): RawRecord {
  if (!isObj(r)) throw bad(`${where} must be a map`);
  if (!isSeq(r.seq) || r.seq < 1) throw bad(`${where}.seq must be a positive integer`);
  if (typeof r.dev !== 'string' || !DEVICE_ID_RE.test(r.dev)) throw bad(`${where}.dev must be a device id`);
  if (!isSeq(r.ts)) throw bad(`${where}.ts must be a non-negative integer (ms)`);
  const rec: RawRecord = { seq: r.seq, dev: r.dev, ts: r.ts, vals: validateValues(r.vals, where) };
  if (r.tags !== undefined) {
    if (!isObj(r.tags)) throw bad(`${where}.tags must be a map`);
    for (const [k, v] of Object.entries(r.tags)) {
      if (!TAG_KEY_RE.test(k) || RESERVED_NAMES.has(k)) throw bad(`${where}.tags has a bad tag name "${k.slice(0, 40)}"`);
      if (typeof v !== 'string' || v.length === 0 || v.length > DEFAULT_PAYLOAD_LIMITS.maxTagValueLength) {
        throw bad(`${where}.tags.${k} must be a non-empty string of at most ${DEFAULT_PAYLOAD_LIMITS.maxTagValueLength} characters`);
      }
    }
    rec.tags = r.tags as Tags;
  }
  if (r.dseq !== undefined) {
    if (!isSeq(r.dseq)) throw bad(`${where}.dseq must be a non-negative integer`);
    rec.dseq = r.dseq;
  }
  if (r.fl !== undefined) {
    if (!isSeq(r.fl)) throw bad(`${where}.fl must be a non-negative integer`);
    rec.fl = r.fl;
  }
  return rec;
}

function validateAggRecord(a: unknown, where = 'aggregate'): AggRecord {
  if (!isObj(a)) throw bad(`${where} must be a map`);
  if (!isSeq(a.seq) || a.seq < 1) throw bad(`${where}.seq must be a positive integer`);
  if (typeof a.dev !== 'string' || !DEVICE_ID_RE.test(a.dev)) throw bad(`${where}.dev must be a device id`);
  if (typeof a.win !== 'string' || !/^[0-9a-z_]{1,32}$/.test(a.win)) throw bad(`${where}.win must be a window name like "1m"`);
  if (!isSeq(a.start) || !isSeq(a.end) || a.end <= a.start) throw bad(`${where}.start/end must be integers with end > start`);
  if (!isSeq(a.rev)) throw bad(`${where}.rev must be a non-negative integer`);
  if (!isObj(a.aggs) || Object.keys(a.aggs).length === 0) throw bad(`${where}.aggs must be a non-empty map`);
  for (const [m, s] of Object.entries(a.aggs)) {
    if (!METRIC_NAME_RE.test(m) || RESERVED_NAMES.has(m)) throw bad(`${where}.aggs has a bad metric name "${m.slice(0, 40)}"`);
    if (!isObj(s) || !isSeq(s.count) || typeof s.mean !== 'number' || !Number.isFinite(s.mean)) {
      throw bad(`${where}.aggs.${m} must hold count and mean`);
    }
    for (const f of ['min', 'max', 'sum'] as const) {
      if (s[f] !== undefined && !(typeof s[f] === 'number' && Number.isFinite(s[f]))) throw bad(`${where}.aggs.${m}.${f} must be a finite number`);
    }
    if (s.last !== undefined && typeof s.last !== 'boolean' && !(typeof s.last === 'number' && Number.isFinite(s.last))) {
      throw bad(`${where}.aggs.${m}.last must be a number or boolean`);
    }
  }
  return a as unknown as AggRecord;
}

// ---- A CBOR writer that can say everything, including what the fast path must leave alone. ----

type Item =
  | { t: 'uint'; n: number; w?: number } // w: force the head width (0 inline, 1, 2, 4, 8 bytes)
  | { t: 'nint'; n: number; w?: number } // encodes -1 - n
  | { t: 'f16'; bits: number }
  | { t: 'f32'; v: number }
  | { t: 'f64'; v: number }
  | { t: 'text'; bytes: Uint8Array; indef?: boolean; w?: number }
  | { t: 'bytes'; bytes: Uint8Array }
  | { t: 'simple'; v: number } // 20..23 are false/true/null/undefined; 0xf8 form for v >= 24
  | { t: 'array'; items: Item[]; indef?: boolean; w?: number }
  | { t: 'map'; entries: [Item, Item][]; indef?: boolean; w?: number }
  | { t: 'tag'; tag: number; item: Item }
  | { t: 'raw'; bytes: number[] };

function head(out: number[], major: number, n: number, w?: number): void {
  const m = major << 5;
  const width = w ?? (n < 24 ? 0 : n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x100000000 ? 4 : 8);
  if (width === 0) out.push(m | n);
  else if (width === 1) out.push(m | 24, n & 0xff);
  else if (width === 2) out.push(m | 25, (n >> 8) & 0xff, n & 0xff);
  else if (width === 4) out.push(m | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
  else {
    const hi = Math.floor(n / 0x100000000);
    const lo = n >>> 0;
    out.push(m | 27, (hi >>> 24) & 0xff, (hi >> 16) & 0xff, (hi >> 8) & 0xff, hi & 0xff, (lo >>> 24) & 0xff, (lo >> 16) & 0xff, (lo >> 8) & 0xff, lo & 0xff);
  }
}

function write(out: number[], it: Item): void {
  switch (it.t) {
    case 'uint':
      return head(out, 0, it.n, it.w);
    case 'nint':
      return head(out, 1, it.n, it.w);
    case 'f16':
      out.push(0xf9, (it.bits >> 8) & 0xff, it.bits & 0xff);
      return;
    case 'f32': {
      const b = Buffer.alloc(4);
      b.writeFloatBE(it.v);
      out.push(0xfa, ...b);
      return;
    }
    case 'f64': {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(it.v);
      out.push(0xfb, ...b);
      return;
    }
    case 'text':
      if (it.indef) {
        out.push(0x7f);
        head(out, 3, it.bytes.length);
        out.push(...it.bytes, 0xff);
        return;
      }
      head(out, 3, it.bytes.length, it.w);
      out.push(...it.bytes);
      return;
    case 'bytes':
      head(out, 2, it.bytes.length);
      out.push(...it.bytes);
      return;
    case 'simple':
      if (it.v < 24) out.push(0xe0 | it.v);
      else out.push(0xf8, it.v);
      return;
    case 'array':
      if (it.indef) out.push(0x9f);
      else head(out, 4, it.items.length, it.w);
      for (const x of it.items) write(out, x);
      if (it.indef) out.push(0xff);
      return;
    case 'map':
      if (it.indef) out.push(0xbf);
      else head(out, 5, it.entries.length, it.w);
      for (const [k, v] of it.entries) {
        write(out, k);
        write(out, v);
      }
      if (it.indef) out.push(0xff);
      return;
    case 'tag':
      head(out, 6, it.tag);
      write(out, it.item);
      return;
    case 'raw':
      out.push(...it.bytes);
  }
}

function encode(it: Item): Uint8Array {
  const out: number[] = [];
  write(out, it);
  return Uint8Array.from(out);
}

const text = (s: string): Item => ({ t: 'text', bytes: new TextEncoder().encode(s) });
/** `inner` inside `n` arrays. */
const nested = (n: number, inner: Item): Item => (n === 0 ? inner : { t: 'array', items: [nested(n - 1, inner)] });

// ---- Generators ----

/** An integer the way some encoder might send it: CBOR int of any width, or an integral float. */
function intItem(n: number): fc.Arbitrary<Item> {
  const widths = [n < 24 ? 0 : undefined, n < 0x100 ? 1 : undefined, n < 0x10000 ? 2 : undefined, n < 0x100000000 ? 4 : undefined, 8].filter((w) => w !== undefined);
  const options: fc.Arbitrary<Item>[] = [fc.constantFrom(...widths).map((w): Item => ({ t: 'uint', n, w })), fc.constant<Item>({ t: 'f64', v: n })];
  if (Math.fround(n) === n) options.push(fc.constant<Item>({ t: 'f32', v: n }));
  if (n <= 2048) options.push(fc.constant<Item>({ t: 'f16', bits: halfBits(n) }));
  return fc.oneof(...options);
}

/** Half-precision bits of a small non-negative integer (exact up to 2048). */
function halfBits(n: number): number {
  if (n === 0) return 0;
  const e = Math.floor(Math.log2(n));
  const mant = Math.round((n / 2 ** e - 1) * 1024);
  return ((e + 15) << 10) | mant;
}

const anyNumber: fc.Arbitrary<Item> = fc.oneof(
  fc.double().map((v): Item => ({ t: 'f64', v })),
  fc.float().map((v): Item => ({ t: 'f32', v })),
  fc.integer({ min: 0, max: 0xffff }).map((bits): Item => ({ t: 'f16', bits })),
  fc.integer({ min: 0, max: 2 ** 40 }).map((n): Item => ({ t: 'uint', n })),
  fc.integer({ min: 0, max: 2 ** 40 }).map((n): Item => ({ t: 'nint', n })),
  fc.constantFrom<Item>({ t: 'uint', n: 2 ** 53 + 2, w: 8 }, { t: 'uint', n: 2 ** 60, w: 8 }, { t: 'nint', n: 2 ** 53, w: 8 }),
);

const utf8Text: fc.Arbitrary<Item> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }).map(text),
  fc.constantFrom('\uFEFFroom', 'a\uFEFF', 'Küche', '温度', '😀x', 'x'.repeat(70), 'é'.repeat(40)).map(text),
);
const brokenText: fc.Arbitrary<Item> = fc.uint8Array({ minLength: 1, maxLength: 8 }).map((bytes): Item => ({ t: 'text', bytes }));
const nameText = (names: string[]): fc.Arbitrary<Item> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...names).map(text) },
    { weight: 1, arbitrary: fc.constantFrom('1t', 'time', 'device', '__proto__', '__proto_', 'constructor', 'toString', 'a b', '').map(text) },
    { weight: 1, arbitrary: utf8Text },
    { weight: 1, arbitrary: brokenText },
  );

const otherItem: fc.Arbitrary<Item> = fc.oneof(
  fc.constantFrom<Item>(
    { t: 'simple', v: 20 },
    { t: 'simple', v: 21 },
    { t: 'simple', v: 22 },
    { t: 'simple', v: 23 },
    { t: 'simple', v: 16 },
    { t: 'simple', v: 20 + 0 },
    { t: 'simple', v: 99 },
    { t: 'raw', bytes: [0xf8, 0x15] },
    { t: 'raw', bytes: [0xff] },
    { t: 'raw', bytes: [0x1c] },
    { t: 'bytes', bytes: new Uint8Array([1, 2]) },
    { t: 'tag', tag: 1, item: { t: 'uint', n: 1732200000 } },
    { t: 'tag', tag: 259, item: { t: 'map', entries: [] } },
    { t: 'array', items: [], indef: true },
    { t: 'map', entries: [[{ t: 'uint', n: 1 }, { t: 'uint', n: 2 }]] },
    { t: 'text', bytes: new TextEncoder().encode('ab'), indef: true },
  ),
  anyNumber,
  utf8Text,
);

const metric = ['temperature', 'humidity', 'door_open', 't', 'x.y-z_1'];

const valsItem: fc.Arbitrary<Item> = fc.oneof(
  { weight: 8, arbitrary: fc.array(fc.tuple(nameText(metric), fc.oneof(anyNumber, fc.constantFrom<Item>({ t: 'simple', v: 20 }, { t: 'simple', v: 21 }))), { maxLength: 4 }).map((entries): Item => ({ t: 'map', entries })) },
  { weight: 1, arbitrary: fc.array(fc.tuple(nameText(metric), otherItem), { minLength: 1, maxLength: 3 }).map((entries): Item => ({ t: 'map', entries })) },
  { weight: 1, arbitrary: otherItem },
);

const tagsItem: fc.Arbitrary<Item> = fc.oneof(
  { weight: 6, arbitrary: fc.array(fc.tuple(nameText(['room', 'floor', 'site']), fc.oneof(utf8Text, brokenText, fc.constant(text('a1')))), { maxLength: 3 }).map((entries): Item => ({ t: 'map', entries })) },
  { weight: 1, arbitrary: otherItem },
);

const deviceItem: fc.Arbitrary<Item> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('d0001', 'd0002', 'dev-1', 'a.b_c').map(text) },
  { weight: 1, arbitrary: fc.constantFrom('a/b', '', 'x'.repeat(65), 'dé').map(text) },
  { weight: 1, arbitrary: fc.oneof(otherItem, brokenText) },
);

/** Valid values only (still in every encoding): most generated batches must be good ones. */
const cleanVals: fc.Arbitrary<Item> = fc
  .array(fc.tuple(fc.constantFrom(...metric).map(text), fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }).map((v): Item => ({ t: 'f64', v })), fc.integer({ min: 0, max: 1000 }).chain(intItem), fc.constantFrom<Item>({ t: 'simple', v: 20 }, { t: 'simple', v: 21 }), fc.integer({ min: 0, max: 2 ** 40 }).map((n): Item => ({ t: 'nint', n })))), { minLength: 1, maxLength: 4 })
  .map((entries): Item => ({ t: 'map', entries }));
const cleanTags: fc.Arbitrary<Item> = fc
  .array(fc.tuple(fc.constantFrom('room', 'floor', 'site').map(text), fc.oneof(fc.constantFrom('a1', 'Küche', '温度', 'a\uFEFF', '😀').map(text), fc.string({ minLength: 1, maxLength: 10 }).map(text))), { maxLength: 3 })
  .map((entries): Item => ({ t: 'map', entries }));

/** A record map: the usual keys in any order, sometimes missing, repeated, unknown or wrong. */
function recordItem(seq: number, clean: boolean): fc.Arbitrary<Item> {
  const field = (name: string, value: fc.Arbitrary<Item>) => fc.tuple(fc.constant(text(name)), value);
  const entries = fc.tuple(
    field('seq', clean ? intItem(seq) : fc.oneof({ weight: 9, arbitrary: intItem(seq) }, { weight: 1, arbitrary: otherItem })),
    field('dev', clean ? fc.constantFrom('d0001', 'd0002', 'dev-1', 'a.b_c').map(text) : deviceItem),
    field('ts', clean ? intItem(1732200000123 + seq) : fc.oneof({ weight: 9, arbitrary: intItem(1732200000123 + seq) }, { weight: 1, arbitrary: otherItem })),
    field('vals', clean ? cleanVals : valsItem),
    fc.option(field('tags', clean ? cleanTags : tagsItem), { freq: 3 }),
    fc.option(field('dseq', clean ? intItem(seq * 7) : fc.oneof(intItem(seq * 7), otherItem)), { freq: 3 }),
    fc.option(field('fl', clean ? intItem(seq % 16) : fc.oneof(intItem(seq % 16), otherItem)), { freq: 3 }),
    fc.option(fc.tuple(clean ? fc.constantFrom('extra', 'note', '__proto__').map(text) : fc.oneof(nameText(['extra', 'seq', 'vals', 'dev']), fc.constant<Item>({ t: 'uint', n: 7 })), otherItem), { freq: 4 }),
    clean ? fc.constant(null) : fc.option(fc.constantFrom('seq', 'dev', 'ts', 'vals'), { freq: 6 }),
  );
  return fc
    .tuple(entries, fc.array(fc.nat(), { maxLength: 12 }), fc.boolean(), fc.boolean())
    .map(([[seqF, devF, tsF, valsF, tagsF, dseqF, flF, extraF, drop], order, indef, wide]): Item => {
      const list: [Item, Item][] = [seqF, devF, tsF, valsF];
      for (const f of [tagsF, dseqF, flF, extraF]) if (f !== null) list.push(f as [Item, Item]);
      const kept = list.filter(([k]) => drop === null || !(k.t === 'text' && new TextDecoder().decode(k.bytes) === drop));
      // shuffle deterministically from `order`
      for (let i = kept.length - 1; i > 0; i--) {
        const j = (order[i % Math.max(1, order.length)] ?? 0) % (i + 1);
        [kept[i], kept[j]] = [kept[j], kept[i]];
      }
      return { t: 'map', entries: kept, indef: indef && order.length === 11, w: wide ? 2 : undefined };
    });
}

const aggItem = (seq: number): fc.Arbitrary<Item> =>
  fc.constantFrom<Item>(
    {
      t: 'map',
      entries: [
        [text('seq'), { t: 'uint', n: seq }],
        [text('dev'), text('d0001')],
        [text('win'), text('1m')],
        [text('start'), { t: 'uint', n: 1732199940000 }],
        [text('end'), { t: 'uint', n: 1732200000000 }],
        [text('rev'), { t: 'uint', n: 0 }],
        [text('aggs'), { t: 'map', entries: [[text('t'), { t: 'map', entries: [[text('count'), { t: 'uint', n: 2 }], [text('mean'), { t: 'f64', v: 1.5 }], [text('last'), { t: 'simple', v: 21 }]] }]] }],
      ],
    },
    { t: 'map', entries: [[text('seq'), { t: 'uint', n: seq }], [text('dev'), text('d0001')]] },
  );

/** A body: records (mostly in order) and aggregates, keys in either order, sometimes odd. */
const bodyCase = fc
  .record({
    n: fc.integer({ min: 0, max: 6 }),
    start: fc.integer({ min: 1, max: 2 ** 33 }),
    aggCount: fc.integer({ min: 0, max: 2 }),
    shape: fc.constantFrom('normal', 'normal', 'normal', 'normal', 'normal', 'normal', 'normal', 'normal', 'aggs-first', 'aggs-first', 'extra-key', 'dup-aggs', 'extra-key', 'dup-recs', 'dup-aggs', 'recs-not-array', 'no-aggs', 'not-a-map', 'proto-key', 'indef-recs', 'trailing'),
    swap: fc.boolean(),
    clean: fc.boolean(),
  })
  .chain(({ n, start, aggCount, shape, swap, clean }) =>
    fc
      .tuple(
        fc.tuple(...Array.from({ length: n }, (_, i) => recordItem(start + i, clean))),
        fc.tuple(...Array.from({ length: aggCount }, (_, i) => aggItem(start + n + i))),
        fc.oneof(otherItem, fc.constant<Item>({ t: 'simple', v: 22 })),
      )
      .map(([recs, aggs, odd]) => {
        if (swap && !clean && recs.length > 1) [recs[0], recs[1]] = [recs[1], recs[0]];
        const recsItem: Item = { t: 'array', items: recs, indef: shape === 'indef-recs' };
        const aggsItem: Item = { t: 'array', items: aggs };
        let entries: [Item, Item][] = [
          [text('recs'), recsItem],
          [text('aggs'), aggsItem],
        ];
        if (shape === 'aggs-first') entries.reverse();
        if (shape === 'extra-key') entries.splice(1, 0, [text('note'), odd]);
        if (shape === 'dup-recs') entries.push([text('recs'), { t: 'array', items: recs.slice(1) }]);
        if (shape === 'dup-aggs') entries.push([text('aggs'), odd]);
        if (shape === 'recs-not-array') entries[0] = [text('recs'), odd];
        if (shape === 'no-aggs') entries = [entries[0]];
        if (shape === 'proto-key') entries.push([text('__proto__'), { t: 'map', entries: [[text('recs'), { t: 'array', items: [] }]] }]);
        let body = encode(shape === 'not-a-map' ? { t: 'array', items: [recsItem, aggsItem] } : { t: 'map', entries });
        if (shape === 'trailing') body = Uint8Array.from([...body, 0x00]);
        return { body, first: start, last: start + n + aggCount + 1 };
      }),
  );

function envelope(body: Uint8Array, first: number, last: number): Buffer {
  return Buffer.from(cborEncoder.encode({ v: 1, gw: 'gw1', inc: 'inc-1', first, last, body, crc: crc32(body) }));
}

type Outcome = { ok: Batch } | { code: string; message: string };

function outcome(fn: () => Batch): Outcome {
  try {
    return { ok: fn() };
  } catch (err) {
    if (!isSluiceError(err)) throw err;
    return { code: err.code, message: err.message };
  }
}

function same(buf: Uint8Array, opts?: { maxDepth?: number }): Outcome {
  const want = outcome(() => oracleDecodeBatch(buf, opts));
  const got = outcome(() => decodeBatch(buf, opts));
  expect(got).toStrictEqual(want);
  return got;
}

/** Damage: flip, cut or insert bytes of the body, keeping the checksum right. */
const damage = fc.array(fc.tuple(fc.constantFrom('flip', 'cut', 'insert'), fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 });

function damaged(body: Uint8Array, edits: [string, number, number][]): Uint8Array {
  let b = [...body];
  for (const [kind, at, byte] of edits) {
    const i = b.length === 0 ? 0 : at % b.length;
    if (kind === 'flip' && b.length > 0) b[i] = byte;
    else if (kind === 'cut') b = b.slice(0, i);
    else b.splice(i, 0, byte);
  }
  return Uint8Array.from(b);
}

describe('decodeBatch decides exactly as the decoder before its fast path', () => {
  it('on generated bodies (valid and not), at every depth limit around the default', () => {
    let accepted = 0;
    fc.assert(
      fc.property(bodyCase, fc.oneof({ weight: 3, arbitrary: fc.constant(DEFAULT_BATCH_MAX_DEPTH) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: 9 }) }), ({ body, first, last }, maxDepth) => {
        const r = same(envelope(body, first, last), { maxDepth });
        if ('ok' in r) accepted++;
      }),
      { numRuns: 4000, seed: 0x5eed },
    );
    // The generators must also produce plenty of good batches, or the comparison proves little.
    expect(accepted).toBeGreaterThan(600);
  });

  it('on damaged bodies with a matching checksum', () => {
    fc.assert(
      fc.property(bodyCase, damage, ({ body, first, last }, edits) => {
        same(envelope(damaged(body, edits), first, last));
      }),
      { numRuns: 4000, seed: 0xda3a },
    );
  });

  it('on bodies the fast path must hand to cbor-x, and on its edge cases', () => {
    const rec = (extra: [Item, Item][] = [], vals: Item = { t: 'map', entries: [[text('t'), { t: 'f64', v: 1.5 }]] }): Item => ({
      t: 'map',
      entries: [[text('seq'), { t: 'uint', n: 1 }], [text('dev'), text('d1')], [text('ts'), { t: 'uint', n: 1732200000123, w: 8 }], [text('vals'), vals], ...extra],
    });
    const body = (recs: Item[], aggs: Item = { t: 'array', items: [] }) => encode({ t: 'map', entries: [[text('recs'), { t: 'array', items: recs }], [text('aggs'), aggs]] });
    const cases: Uint8Array[] = [
      body([rec()]),
      body([rec([[text('tags'), { t: 'map', entries: [[text('room'), text('\uFEFFa')]] }]])]),
      body([rec([[text('tags'), { t: 'map', entries: [[text('room'), text('a\uFEFF')]] }]])]),
      body([rec([[text('tags'), { t: 'map', entries: [[text('room'), { t: 'text', bytes: new Uint8Array([0xc3]) }]] }]])]),
      body([rec([[text('tags'), { t: 'map', entries: [[text('room'), { t: 'text', bytes: new Uint8Array([0xed, 0xa0, 0x80]) }]] }]])]),
      body([rec([[text('tags'), { t: 'map', entries: [[text('room'), text('é'.repeat(64))]] }]])]),
      body([rec([[{ t: 'text', bytes: new Uint8Array([0xff, 0xfe]) }, { t: 'uint', n: 1 }]])]),
      body([rec([[text('__proto__'), { t: 'map', entries: [] }]])]),
      body([rec([], { t: 'map', entries: [[text('__proto__'), { t: 'f64', v: 1 }]] })]),
      body([rec([], { t: 'map', entries: [[text('t'), { t: 'f64', v: 1 }], [text('__proto__'), { t: 'f64', v: 1 }]] })]),
      body([rec([], { t: 'map', entries: [[text('t'), { t: 'f64', v: 1 }], [text('__proto__'), { t: 'map', entries: [] }]] })]),
      body([rec([[text('tags'), { t: 'map', entries: [[text('room'), text('a')], [text('__proto__'), text('x')]] }]])]),
      body([rec([[text('tags'), { t: 'map', entries: [[text('room'), text('a')], [text('__proto__'), { t: 'simple', v: 22 }]] }]])]),
      body([rec([], { t: 'map', entries: [[text('t'), { t: 'f16', bits: 0x7c00 }]] })]),
      body([rec([], { t: 'map', entries: [[text('t'), { t: 'f16', bits: 0x8000 }]] })]),
      body([rec([], { t: 'map', entries: [[text('t'), { t: 'f16', bits: 0x0001 }]] })]),
      body([rec([], { t: 'map', entries: [[text('t'), { t: 'f64', v: -0 }]] })]),
      body([rec([], { t: 'map', entries: [[text('t'), { t: 'tag', tag: 2, item: { t: 'bytes', bytes: new Uint8Array([1]) } }]] })]),
      body([rec([], { t: 'map', entries: [[text('t'), { t: 'f64', v: 1 }], [text('t'), { t: 'simple', v: 21 }]] })]),
      body([rec([[text('seq'), { t: 'uint', n: 2 }]])]),
      body([rec([[text('ts'), { t: 'f64', v: 1732200000123 }]])]),
      body([rec([[text('seq'), { t: 'raw', bytes: [0xf8, 0x14] }]])]),
      body([rec([[text('fl'), { t: 'raw', bytes: [0x1b, 0, 0, 0, 0, 0, 0, 0, 5] }]])]),
      body([{ t: 'map', entries: [[text('seq'), { t: 'uint', n: 1 }]], indef: true }]),
      body([rec()], { t: 'array', items: [], indef: true }),
      encode({ t: 'map', entries: [[text('recs'), { t: 'array', items: [rec()] }], [text('aggs'), { t: 'array', items: [] }]], w: 8 }),
      encode({ t: 'map', entries: [[text('recs'), { t: 'array', items: [rec()], w: 8 }], [text('aggs'), { t: 'array', items: [] }]] }),
      encode({ t: 'map', entries: [[text('recs'), { t: 'array', items: [] }], [text('aggs'), { t: 'array', items: [] }]] }),
      Uint8Array.from([...body([rec()]), 0xf6]),
      body([rec()]).subarray(0, 20),
      new Uint8Array(0),
      Uint8Array.from([0xa2]),
      Uint8Array.from([0xbf, 0xff]),
      Uint8Array.from([0x9a, 0xff, 0xff, 0xff, 0xff]),
      encode({ t: 'map', entries: [[text('recs'), nested(7, { t: 'array', items: [] })], [text('aggs'), { t: 'array', items: [] }]] }),
      encode({ t: 'map', entries: [[text('recs'), { t: 'array', items: [rec([], { t: 'map', entries: [[text('t'), nested(3, { t: 'map', entries: [] })]] })] }], [text('aggs'), { t: 'array', items: [] }]] }),
    ];
    for (const b of cases) for (const maxDepth of [1, 2, 3, 4, 5, 6, 8, 9]) same(envelope(b, 1, 3), { maxDepth });
  });

  it('reads many distinct texts of one length (colliding cache slots)', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    let x = 7;
    const next = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) % alphabet.length;
    const ids = Array.from({ length: 20_000 }, () => Array.from({ length: 6 }, () => alphabet[next()]).join(''));
    expect(new Set(ids).size).toBeGreaterThan(19_000);
    const recs = ids.map((dev, j): Item => ({
      t: 'map',
      entries: [[text('seq'), { t: 'uint', n: j + 1 }], [text('dev'), text(dev)], [text('ts'), { t: 'uint', n: j }], [text('vals'), { t: 'map', entries: [[text(`m${dev}`), { t: 'uint', n: j }]] }], [text('tags'), { t: 'map', entries: [[text('room'), text(dev)]] }]],
    }));
    const body = encode({ t: 'map', entries: [[text('recs'), { t: 'array', items: recs }], [text('aggs'), { t: 'array', items: [] }]] });
    for (let round = 0; round < 2; round++) expect('ok' in same(envelope(body, 1, ids.length))).toBe(true);
  });

  it('reads what encodeBatch writes, from many batches in a row (caches warm and cold)', () => {
    for (let round = 0; round < 3; round++) {
      const recs: RawRecord[] = Array.from({ length: 2000 }, (_, j) => ({
        seq: j + 1,
        dev: `d${j % (round === 2 ? 1999 : 50)}`,
        ts: 1732200000000 + j,
        vals: { temperature: 20 + j / 7, humidity: j % 100, door_open: j % 3 === 0 },
        ...(j % 5 === 0 ? { tags: { room: `r${j % 9}`, site: 'Küche' } } : {}),
        ...(j % 4 === 0 ? { dseq: j * 3 } : {}),
      }));
      const bytes = Buffer.from(cborEncoder.encode({ v: 1, gw: 'g', inc: 'i', first: 1, last: 2000, body: cborEncoder.encode({ recs, aggs: [] }), crc: 0 }));
      const env = cborDecoder.decode(bytes) as { body: Uint8Array };
      const good = envelope(env.body, 1, 2000);
      expect(same(good)).toStrictEqual({ ok: { v: 1, gw: 'gw1', inc: 'inc-1', first: 1, last: 2000, recs, aggs: [] } });
    }
  });
});

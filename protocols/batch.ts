/**
 * Batch v1: what a gateway POSTs to the cloud at /api/v1/batches (Content-Type: application/cbor).
 *
 * Envelope, a CBOR map:
 *   v      1                     major version; a decoder refuses any other
 *   gw     gateway id            must match the bearer token's gateway
 *   inc    gateway incarnation   random id made when the gateway's log was created; a new log
 *                                (disk wiped) starts a new sequence space
 *   first  first sequence the batch covers (previous batch's last + 1)
 *   last   last sequence the batch covers; records hold a subset of [first, last]: sequences
 *          missing inside the range were dropped or quarantined at the gateway and are accounted there
 *   body   CBOR bytes of { recs: RawRecord[], aggs: AggRecord[] }
 *   crc    CRC-32 (zlib polynomial) of `body`
 *
 * The checksum is over the body bytes as sent, so the cloud verifies before decoding them.
 * Response: 200 with { acked: <highest sequence durably written> } (CBOR or JSON); see ARCHITECTURE.md
 * for 400/401/403/409/413/429/503.
 */
import { crc32 } from 'node:zlib';
import { AsciiCache } from './ascii-cache.js';
import { cborDecoder as decoder, cborEncoder as encoder, cborInt } from './cbor.js';
import { SluiceError } from './errors.js';
import { cborDepthExceeds } from './nesting.js';
import { DEVICE_ID_RE, RESERVED_NAMES } from './topic.js';
import { DEFAULT_PAYLOAD_LIMITS, METRIC_NAME_RE, TAG_KEY_RE, type Tags, type Values } from './payload.js';

export const BATCH_VERSION = 1;
/** Deepest map/array nesting a batch (envelope or body) may have. */
export const DEFAULT_BATCH_MAX_DEPTH = 8;
export const GATEWAY_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** One reading as stored in the gateway log and sent in a batch. */
export interface RawRecord {
  /** Gateway sequence number: strictly increasing per gateway incarnation, survives restarts. */
  seq: number;
  dev: string;
  /** Event time, ms since the epoch. */
  ts: number;
  vals: Values;
  tags?: Tags;
  /** The device's own counter, when it sent one. */
  dseq?: number;
  /** Bit flags: 1 = ts assigned by the gateway (device sent none). */
  fl?: number;
}

export const FLAG_GATEWAY_TS = 1;
/** The gateway clock was not yet synchronised when it assigned `ts`. */
export const FLAG_CLOCK_UNSYNCED = 2;
/** Event time far in the future relative to the gateway clock. */
export const FLAG_FUTURE_TS = 4;
/** Event time implausibly old. */
export const FLAG_ANCIENT_TS = 8;

export interface MetricAggregate {
  count: number;
  min?: number;
  max?: number;
  mean: number;
  sum?: number;
  last?: number | boolean;
}

/** One closed event-time window of one device, as sent to the cloud. */
export interface AggRecord {
  seq: number;
  dev: string;
  /** Window name, e.g. "1m" or "5m_1m" (size_advance for hopping windows). */
  win: string;
  /** Window start and end, ms since the epoch. */
  start: number;
  end: number;
  /** Revision: 0 on first close, +1 each time late data corrects it. */
  rev: number;
  aggs: Record<string, MetricAggregate>;
}

export interface Batch {
  v: number;
  gw: string;
  inc: string;
  first: number;
  last: number;
  recs: RawRecord[];
  aggs: AggRecord[];
}

export function encodeBatch(b: Omit<Batch, 'v'> & { v?: number }): Buffer {
  // Integer fields go out as CBOR integers (see cbor.ts); values keep their JS number encoding.
  const recs = b.recs.map((r) => ({ ...r, seq: cborInt(r.seq), ts: cborInt(r.ts), ...(r.dseq === undefined ? {} : { dseq: cborInt(r.dseq) }) }));
  const aggs = b.aggs.map((a) => ({ ...a, seq: cborInt(a.seq), start: cborInt(a.start), end: cborInt(a.end) }));
  return encodeBatchEnvelope(b, encoder.encode({ recs, aggs }));
}

/**
 * The envelope around an already encoded body (CBOR map { recs, aggs }). The gateway's forwarder
 * builds the body from its log's stored bytes (gateway/log-codec.ts) and wraps it here. `into`: a
 * buffer to write it in when it is large enough (envelopeBytes), instead of a new one.
 */
export function encodeBatchEnvelope(b: { v?: number; gw: string; inc: string; first: number; last: number }, body: Uint8Array, into?: Buffer): Buffer {
  // The bytes cbor-x writes for { v, gw, inc, first, last, body, crc }, with the body copied once
  // (cbor-x would copy it into its own buffer, then out again): the five small fields through
  // cbor-x, its map header raised from 5 to 7 entries, then "body" and "crc" written here.
  const head = encoder.encode({ v: b.v ?? BATCH_VERSION, gw: b.gw, inc: b.inc, first: cborInt(b.first), last: cborInt(b.last) });
  const n = body.length;
  const size = head.length + ENVELOPE_EXTRA + n;
  const out = into !== undefined && into.length >= size ? into : Buffer.allocUnsafe(size);
  out.set(head, 0);
  out[0] = 0xa7;
  let pos = head.length;
  out.write('\x64body', pos, 'latin1');
  pos = writeCborHead(out, pos + 5, 0x40, n);
  out.set(body, pos);
  pos += n;
  out.write('\x63crc', pos, 'latin1');
  // crc as cbor-x writes an unsigned integer: the shortest form.
  pos = writeCborHead(out, pos + 4, 0x00, crc32(body));
  return out.subarray(0, pos);
}

/** Bytes an envelope adds to its body beyond the five small fields: "body", its head, "crc", the crc. */
const ENVELOPE_EXTRA = 5 + 5 + 4 + 5;

/** At most how many bytes the envelope of a `bodyBytes` body takes (gateway ids and incarnations up to 64 characters). */
export function envelopeBytes(bodyBytes: number): number {
  return bodyBytes + ENVELOPE_EXTRA + 256;
}

/** A CBOR head (`major`: 0x00 unsigned, 0x40 byte string, …) of minimal size for `n` < 2^32; returns the position after it. */
function writeCborHead(out: Buffer, pos: number, major: number, n: number): number {
  if (n < 24) {
    out[pos] = major | n;
    return pos + 1;
  }
  if (n < 0x100) {
    out[pos] = major | 24;
    out[pos + 1] = n;
    return pos + 2;
  }
  if (n < 0x10000) {
    out[pos] = major | 25;
    out.writeUInt16BE(n, pos + 1);
    return pos + 3;
  }
  out[pos] = major | 26;
  out.writeUInt32BE(n, pos + 1);
  return pos + 5;
}

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_BATCH', message);
}

function isObj(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x) && !(x instanceof Uint8Array);
}

function isSeq(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Decode and fully validate a batch. Throws SluiceError with a code naming the defect. */
export function decodeBatch(buf: Uint8Array, opts: { maxBytes?: number; maxDepth?: number } = {}): Batch {
  const maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  if (buf.length > maxBytes) throw new SluiceError('SLUICE_TOO_LARGE', `batch of ${buf.length} bytes exceeds ${maxBytes} bytes`);
  // A valid batch nests 2 deep (envelope) and 5 deep (body): refuse deeper input before decoding it.
  const maxDepth = opts.maxDepth ?? DEFAULT_BATCH_MAX_DEPTH;
  if (cborDepthExceeds(buf, maxDepth)) throw bad(`batch nests deeper than the limit of ${maxDepth}`);
  let env: unknown;
  try {
    env = decoder.decode(buf);
  } catch (err) {
    throw new SluiceError('SLUICE_BAD_BATCH', `batch is not valid CBOR: ${(err as Error).message}`, { cause: err });
  }
  if (!isObj(env)) throw bad('batch must be a CBOR map');
  if (env.v !== BATCH_VERSION) {
    if (typeof env.v === 'number') {
      throw new SluiceError('SLUICE_UNSUPPORTED_VERSION', `batch version ${env.v} is not supported (this cloud reads version ${BATCH_VERSION})`);
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
  const first = env.first;
  const last = env.last;
  let recsIn: unknown[];
  let aggsIn: unknown[];
  // Records the fast path read are validated already (it gives up on any that is not valid).
  let valid: RawRecord[] | undefined;
  const fast = readBodyFast(env.body, maxDepth);
  if (fast !== undefined) {
    valid = fast.recs;
    recsIn = fast.recs;
    aggsIn = fast.aggs;
  } else {
    if (cborDepthExceeds(env.body, maxDepth)) throw bad(`batch body nests deeper than the limit of ${maxDepth}`);
    let body: unknown;
    try {
      body = decoder.decode(env.body);
    } catch (err) {
      throw new SluiceError('SLUICE_BAD_BATCH', `batch body is not valid CBOR: ${(err as Error).message}`, { cause: err });
    }
    if (!isObj(body) || !Array.isArray(body.recs) || !Array.isArray(body.aggs)) throw bad('batch body must be a map with "recs" and "aggs" arrays');
    recsIn = body.recs;
    aggsIn = body.aggs;
  }
  // Plain loops, and record names ("recs[7]") built only for an error: this runs once per reading.
  const recs: RawRecord[] = valid ?? [];
  let prev = first - 1;
  for (let i = 0; i < recsIn.length; i++) {
    const rec = valid ? valid[i] : rawRecord(recsIn[i], 'recs', i);
    if (rec.seq <= prev || rec.seq > last) throw bad(`recs[${i}].seq ${rec.seq} is out of order or outside [${first}, ${last}]`);
    prev = rec.seq;
    if (!valid) recs.push(rec);
  }
  const aggs: AggRecord[] = [];
  if (aggsIn.length > 0) {
    // Raw records and aggregates share the gateway's one sequence space: a number is used once.
    const used = new Set<number>();
    for (const r of recs) used.add(r.seq);
    for (let i = 0; i < aggsIn.length; i++) {
      const agg = aggRecord(aggsIn[i], 'aggs', i);
      if (agg.seq < first || agg.seq > last) throw bad(`aggs[${i}].seq ${agg.seq} is outside [${first}, ${last}]`);
      if (used.has(agg.seq)) throw bad(`aggs[${i}].seq ${agg.seq} is used twice in the batch`);
      used.add(agg.seq);
      aggs.push(agg);
    }
  }
  return { v: env.v, gw: env.gw, inc: env.inc, first, last, recs, aggs };
}

/*
 * Fast path for the batch body. The cloud decodes and validates every reading it stores; cbor-x's
 * general reader (an object per record, built key by key) plus the separate depth scan were a third
 * of the cloud's CPU per point. This reader covers the plain subset of CBOR a body is made of
 * (definite maps with text keys, definite arrays, integers, floats, text, true/false/null/undefined)
 * and reads each record map straight into the fields validateRawRecord looks at, which it then
 * validates the same way (rawFields). Maps and arrays it builds in general (vals, tags, aggregates)
 * are what cbor-x (protocols/cbor.ts options) builds for them; repeated texts (keys, device ids) come
 * from a small cache instead of being created again.
 *
 * It gives up, and the body takes the general path (cborDepthExceeds, cbor-x, validation of each
 * record), on anything else: byte strings, tags, indefinite lengths, other simple values, non-text
 * map keys, invalid UTF-8 or a text starting with U+FEFF, truncation, trailing bytes, sizes cbor-x
 * refuses, nesting deeper than the limit, a body that is not { recs: [...], aggs: [...] }, a record
 * that is not a map or does not validate. The general path then produces the error, so every
 * error message stays what it was. A body the fast path reads passes cborDepthExceeds: that scan
 * walks the same items in the same order and counts maps and arrays the same way.
 */
const GIVE_UP = new Error('outside the fast subset');
const EMPTY_BYTES = new Uint8Array(0);
let src: Uint8Array = EMPTY_BYTES;
let view: DataView<ArrayBufferLike> = new DataView(EMPTY_BYTES.buffer);
let pos = 0;
let end = 0;
let depthLimit = 0;
/** cbor-x's check: array lengths of one decode may not add up to more than its input bytes. */
let arrayBudget = 0;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** Recently read ASCII texts: keys and device ids repeat on every record. */
const texts = new AsciiCache(4096, 64);

/** Validated records and the raw aggregates of a body, or undefined when the fast path gave up. */
function readBodyFast(buf: Uint8Array, maxDepth: number): { recs: RawRecord[]; aggs: unknown[] } | undefined {
  src = buf;
  view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  pos = 0;
  end = buf.length;
  depthLimit = maxDepth;
  arrayBudget = buf.length;
  try {
    const n = containerHead(5, 0);
    let recs: RawRecord[] | undefined;
    let aggs: unknown;
    for (let i = 0; i < n; i++) {
      const k = readKey();
      if (k === 'recs') {
        if (recs !== undefined) return undefined;
        recs = readRecords();
      } else if (k === 'aggs') aggs = readItem(1);
      else readItem(1);
    }
    if (pos !== end || recs === undefined || !Array.isArray(aggs)) return undefined;
    return { recs, aggs };
  } catch {
    return undefined; // GIVE_UP, or anything unforeseen: the general path decides
  } finally {
    src = EMPTY_BYTES;
  }
}

/** The header of a map (major 5) or array (4) nested in `enclosing` containers: its length. */
function containerHead(major: number, enclosing: number): number {
  if (pos >= end) throw GIVE_UP;
  const head = src[pos++];
  if (head >> 5 !== major) throw GIVE_UP;
  const n = readArg(head & 0x1f);
  if (enclosing + 1 > depthLimit) throw GIVE_UP;
  if (major === 4 ? n > end - pos || (arrayBudget -= n) < 0 : n > (end - pos) / 2) throw GIVE_UP;
  return n;
}

function readRecords(): RawRecord[] {
  const n = containerHead(4, 1);
  const recs: RawRecord[] = [];
  for (let i = 0; i < n; i++) recs.push(readRecord());
  return recs;
}

/** One record map (inside body and recs: 2 enclosing containers), validated. */
function readRecord(): RawRecord {
  const n = containerHead(5, 2);
  let seq: unknown;
  let dev: unknown;
  let ts: unknown;
  let vals: unknown;
  let tags: unknown;
  let dseq: unknown;
  let fl: unknown;
  for (let i = 0; i < n; i++) {
    // Keys are told apart by their bytes; one the validator ignores is skipped unread.
    if (pos >= end || src[pos] >> 5 !== 3) throw GIVE_UP;
    const len = readArg(src[pos++] & 0x1f);
    if (len > end - pos) throw GIVE_UP;
    const k = pos;
    pos += len;
    const b0 = src[k];
    const b1 = src[k + 1];
    if (len === 3 && b0 === 0x73 && b1 === 0x65 && src[k + 2] === 0x71) seq = readItem(3); // seq
    else if (len === 3 && b0 === 0x64 && b1 === 0x65 && src[k + 2] === 0x76) dev = readItem(3); // dev
    else if (len === 2 && b0 === 0x74 && b1 === 0x73) ts = readItem(3); // ts
    else if (len === 4 && b0 === 0x76 && b1 === 0x61 && src[k + 2] === 0x6c && src[k + 3] === 0x73) vals = readItem(3); // vals
    else if (len === 4 && b0 === 0x74 && b1 === 0x61 && src[k + 2] === 0x67 && src[k + 3] === 0x73) tags = readItem(3); // tags
    else if (len === 4 && b0 === 0x64 && b1 === 0x73 && src[k + 2] === 0x65 && src[k + 3] === 0x71) dseq = readItem(3); // dseq
    else if (len === 2 && b0 === 0x66 && b1 === 0x6c) fl = readItem(3); // fl
    else readItem(3);
  }
  try {
    return rawFields(seq, dev, ts, vals, tags, dseq, fl, 'recs', -1);
  } catch {
    throw GIVE_UP;
  }
}

/** The argument of a head with additional info `ai` (0..26; 8-byte arguments only for integers). */
function readArg(ai: number): number {
  if (ai < 24) return ai;
  if (ai === 24) {
    if (pos + 1 > end) throw GIVE_UP;
    return src[pos++];
  }
  if (ai === 25) {
    if (pos + 2 > end) throw GIVE_UP;
    const n = view.getUint16(pos);
    pos += 2;
    return n;
  }
  if (ai === 26) {
    if (pos + 4 > end) throw GIVE_UP;
    const n = view.getUint32(pos);
    pos += 4;
    return n;
  }
  throw GIVE_UP;
}

/** A map key: a text. */
function readKey(): string {
  if (pos >= end || src[pos] >> 5 !== 3) throw GIVE_UP;
  const k = readText(readArg(src[pos++] & 0x1f));
  return k === '__proto__' ? '__proto_' : k; // as cbor-x names it
}

/** Any item inside `enclosing` containers. */
function readItem(enclosing: number): unknown {
  if (pos >= end) throw GIVE_UP;
  const head = src[pos];
  const ai = head & 0x1f;
  switch (head >> 5) {
    case 0:
      pos++;
      return ai === 27 ? readUint64() : readArg(ai);
    case 1:
      pos++;
      return -1 - (ai === 27 ? readUint64() : readArg(ai));
    case 3:
      pos++;
      return readText(readArg(ai));
    case 4: {
      const n = containerHead(4, enclosing);
      const a = new Array(n);
      for (let i = 0; i < n; i++) a[i] = readItem(enclosing + 1);
      return a;
    }
    case 5: {
      const n = containerHead(5, enclosing);
      const o: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) {
        const k = readKey();
        o[k] = readItem(enclosing + 1);
      }
      return o;
    }
    case 7:
      pos++;
      return readSimple(ai);
    default:
      throw GIVE_UP;
  }
}

function readSimple(ai: number): unknown {
  switch (ai) {
    case 20:
      return false;
    case 21:
      return true;
    case 22:
      return null;
    case 23:
      return undefined;
    case 25: {
      if (pos + 2 > end) throw GIVE_UP;
      const h = view.getUint16(pos);
      pos += 2;
      return half(h);
    }
    case 26: {
      if (pos + 4 > end) throw GIVE_UP;
      const f = view.getFloat32(pos);
      pos += 4;
      return f;
    }
    case 27: {
      if (pos + 8 > end) throw GIVE_UP;
      const f = view.getFloat64(pos);
      pos += 8;
      return f;
    }
    default:
      throw GIVE_UP;
  }
}

/** An 8-byte integer argument as a number, computed as cbor-x computes it (int64AsNumber). */
function readUint64(): number {
  if (pos + 8 > end) throw GIVE_UP;
  const n = view.getUint32(pos) * 0x100000000 + view.getUint32(pos + 4);
  pos += 8;
  return n;
}

/** IEEE 754 half precision → number (exact). */
function half(h: number): number {
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  const abs = exp === 0 ? mant / 0x1000000 : exp === 0x1f ? (mant === 0 ? Infinity : NaN) : (mant + 1024) * 2 ** (exp - 25);
  return h & 0x8000 ? -abs : abs;
}

function readText(n: number): string {
  if (n > end - pos) throw GIVE_UP;
  const start = pos;
  pos += n;
  return texts.text(src, start, pos) ?? readUtf8(start);
}

function readUtf8(start: number): string {
  let s: string;
  try {
    s = utf8.decode(src.subarray(start, pos));
  } catch {
    throw GIVE_UP; // invalid UTF-8: cbor-x's replacement characters are its own business
  }
  // A leading U+FEFF is kept by some of cbor-x's string paths and dropped by others.
  if (s.charCodeAt(0) === 0xfeff) throw GIVE_UP;
  return s;
}

/** Where a defect is, for its message: "record", or "recs[7]" inside a batch (index >= 0). */
function at(where: string, index: number): string {
  return index < 0 ? where : `${where}[${index}]`;
}

/**
 * Names already known to pass their rule, so a fleet's few distinct metric names, tag keys and
 * device ids are each matched against the regular expression once, not once per reading. Only
 * names that passed are kept; a set that reaches its bound is emptied (the rule is then simply
 * applied again), so memory stays bounded whatever the input.
 */
class NameCache {
  private readonly ok = new Set<string>();

  constructor(
    private readonly max: number,
    private readonly rule: (s: string) => boolean,
  ) {}

  has(s: string): boolean {
    if (this.ok.has(s)) return true;
    if (!this.rule(s)) return false;
    if (this.ok.size >= this.max) this.ok.clear();
    this.ok.add(s);
    return true;
  }
}

const metricNames = new NameCache(10_000, (k) => METRIC_NAME_RE.test(k) && !RESERVED_NAMES.has(k));
const tagKeys = new NameCache(10_000, (k) => TAG_KEY_RE.test(k) && !RESERVED_NAMES.has(k));
const deviceIds = new NameCache(50_000, (d) => DEVICE_ID_RE.test(d));
const WINDOW_NAME_RE = /^[0-9a-z_]{1,32}$/;
const OPTIONAL_AGG_NUMBERS = ['min', 'max', 'sum'] as const;

// Maps are walked with for…in rather than Object.keys/entries (no array per record). That sees
// exactly the own keys: decoded CBOR maps are plain objects (or cbor-x tag/class instances), and
// none of their prototypes has enumerable properties.

function validateValues(x: unknown, where: string, index: number): Values {
  if (!isObj(x)) throw bad(`${at(where, index)}.vals must be a map`);
  let empty = true;
  for (const k in x) {
    empty = false;
    if (!metricNames.has(k)) throw bad(`${at(where, index)}.vals has a bad metric name "${k.slice(0, 40)}"`);
    const v = x[k];
    if (typeof v !== 'boolean' && !(typeof v === 'number' && Number.isFinite(v))) throw bad(`${at(where, index)}.vals.${k} must be a finite number or boolean`);
  }
  if (empty) throw bad(`${at(where, index)}.vals is empty`);
  return x as Values;
}

function validateTags(x: unknown, where: string, index: number): Tags {
  if (!isObj(x)) throw bad(`${at(where, index)}.tags must be a map`);
  const maxLen = DEFAULT_PAYLOAD_LIMITS.maxTagValueLength;
  for (const k in x) {
    if (!tagKeys.has(k)) throw bad(`${at(where, index)}.tags has a bad tag name "${k.slice(0, 40)}"`);
    const v = x[k];
    if (typeof v !== 'string' || v.length === 0 || v.length > maxLen) {
      throw bad(`${at(where, index)}.tags.${k} must be a non-empty string of at most ${maxLen} characters`);
    }
  }
  return x as Tags;
}

function rawRecord(r: unknown, where: string, index: number): RawRecord {
  if (!isObj(r)) throw bad(`${at(where, index)} must be a map`);
  return rawFields(r.seq, r.dev, r.ts, r.vals, r.tags, r.dseq, r.fl, where, index);
}

/** The checks of validateRawRecord on a record's fields (undefined: absent). */
function rawFields(seq: unknown, dev: unknown, ts: unknown, vals: unknown, tags: unknown, dseq: unknown, fl: unknown, where: string, index: number): RawRecord {
  if (!isSeq(seq) || seq < 1) throw bad(`${at(where, index)}.seq must be a positive integer`);
  if (typeof dev !== 'string' || !deviceIds.has(dev)) throw bad(`${at(where, index)}.dev must be a device id`);
  if (!isSeq(ts)) throw bad(`${at(where, index)}.ts must be a non-negative integer (ms)`);
  const rec: RawRecord = { seq, dev, ts, vals: validateValues(vals, where, index) };
  if (tags !== undefined) rec.tags = validateTags(tags, where, index);
  if (dseq !== undefined) {
    if (!isSeq(dseq)) throw bad(`${at(where, index)}.dseq must be a non-negative integer`);
    rec.dseq = dseq;
  }
  if (fl !== undefined) {
    if (!isSeq(fl)) throw bad(`${at(where, index)}.fl must be a non-negative integer`);
    rec.fl = fl;
  }
  return rec;
}

export function validateRawRecord(r: unknown, where = 'record'): RawRecord {
  return rawRecord(r, where, -1);
}

function aggRecord(a: unknown, where: string, index: number): AggRecord {
  if (!isObj(a)) throw bad(`${at(where, index)} must be a map`);
  if (!isSeq(a.seq) || a.seq < 1) throw bad(`${at(where, index)}.seq must be a positive integer`);
  if (typeof a.dev !== 'string' || !deviceIds.has(a.dev)) throw bad(`${at(where, index)}.dev must be a device id`);
  if (typeof a.win !== 'string' || !WINDOW_NAME_RE.test(a.win)) throw bad(`${at(where, index)}.win must be a window name like "1m"`);
  if (!isSeq(a.start) || !isSeq(a.end) || a.end <= a.start) throw bad(`${at(where, index)}.start/end must be integers with end > start`);
  if (!isSeq(a.rev)) throw bad(`${at(where, index)}.rev must be a non-negative integer`);
  const aggs = a.aggs;
  if (!isObj(aggs) || Object.keys(aggs).length === 0) throw bad(`${at(where, index)}.aggs must be a non-empty map`);
  for (const m in aggs) {
    if (!metricNames.has(m)) throw bad(`${at(where, index)}.aggs has a bad metric name "${m.slice(0, 40)}"`);
    const s = aggs[m];
    if (!isObj(s) || !isSeq(s.count) || typeof s.mean !== 'number' || !Number.isFinite(s.mean)) {
      throw bad(`${at(where, index)}.aggs.${m} must hold count and mean`);
    }
    for (const f of OPTIONAL_AGG_NUMBERS) {
      if (s[f] !== undefined && !(typeof s[f] === 'number' && Number.isFinite(s[f]))) throw bad(`${at(where, index)}.aggs.${m}.${f} must be a finite number`);
    }
    if (s.last !== undefined && typeof s.last !== 'boolean' && !(typeof s.last === 'number' && Number.isFinite(s.last))) {
      throw bad(`${at(where, index)}.aggs.${m}.last must be a number or boolean`);
    }
  }
  return a as unknown as AggRecord;
}

export function validateAggRecord(a: unknown, where = 'aggregate'): AggRecord {
  return aggRecord(a, where, -1);
}

/** Response body of a 200: the highest sequence the cloud has durably written for this incarnation. */
export interface BatchAck {
  acked: number;
}

/** Response body of a 409: the sequence the cloud expects next. */
export interface BatchGap {
  error: string;
  code: 'SLUICE_GAP';
  expected: number;
}

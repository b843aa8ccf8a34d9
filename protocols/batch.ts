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
 * builds the body from its log's stored bytes (gateway/log-codec.ts) and wraps it here.
 */
export function encodeBatchEnvelope(b: { v?: number; gw: string; inc: string; first: number; last: number }, body: Uint8Array): Buffer {
  // The bytes cbor-x writes for { v, gw, inc, first, last, body, crc }, with the body copied once
  // (cbor-x would copy it into its own buffer, then out again): the five small fields through
  // cbor-x, its map header raised from 5 to 7 entries, then "body" and "crc" written here.
  const head = encoder.encode({ v: b.v ?? BATCH_VERSION, gw: b.gw, inc: b.inc, first: cborInt(b.first), last: cborInt(b.last) });
  const n = body.length;
  const bodyHead = n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  const out = Buffer.allocUnsafe(head.length + 5 + bodyHead + n + 4 + 5);
  head.copy(out, 0);
  out[0] = 0xa7;
  let pos = head.length;
  out.write('\x64body', pos, 'latin1');
  pos += 5;
  if (bodyHead === 1) out[pos++] = 0x40 | n;
  else if (bodyHead === 2) {
    out[pos++] = 0x58;
    out[pos++] = n;
  } else if (bodyHead === 3) {
    out[pos++] = 0x59;
    out.writeUInt16BE(n, pos);
    pos += 2;
  } else {
    out[pos++] = 0x5a;
    out.writeUInt32BE(n, pos);
    pos += 4;
  }
  out.set(body, pos);
  pos += n;
  out.write('\x63crc', pos, 'latin1');
  pos += 4;
  // crc as cbor-x writes an unsigned integer: the shortest form.
  const crc = crc32(body);
  if (crc < 24) out[pos++] = crc;
  else if (crc < 0x100) {
    out[pos++] = 0x18;
    out[pos++] = crc;
  } else if (crc < 0x10000) {
    out[pos++] = 0x19;
    out.writeUInt16BE(crc, pos);
    pos += 2;
  } else {
    out[pos++] = 0x1a;
    out.writeUInt32BE(crc, pos);
    pos += 4;
  }
  return out.subarray(0, pos);
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
  if (cborDepthExceeds(env.body, maxDepth)) throw bad(`batch body nests deeper than the limit of ${maxDepth}`);
  let body: unknown;
  try {
    body = decoder.decode(env.body);
  } catch (err) {
    throw new SluiceError('SLUICE_BAD_BATCH', `batch body is not valid CBOR: ${(err as Error).message}`, { cause: err });
  }
  if (!isObj(body) || !Array.isArray(body.recs) || !Array.isArray(body.aggs)) throw bad('batch body must be a map with "recs" and "aggs" arrays');
  const first = env.first;
  const last = env.last;
  // Plain loops, and record names ("recs[7]") built only for an error: this runs once per reading.
  const recsIn: unknown[] = body.recs;
  const aggsIn: unknown[] = body.aggs;
  const recs: RawRecord[] = [];
  let prev = first - 1;
  for (let i = 0; i < recsIn.length; i++) {
    const rec = rawRecord(recsIn[i], 'recs', i);
    if (rec.seq <= prev || rec.seq > last) throw bad(`recs[${i}].seq ${rec.seq} is out of order or outside [${first}, ${last}]`);
    prev = rec.seq;
    recs.push(rec);
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
  const seq = r.seq;
  const dev = r.dev;
  const ts = r.ts;
  if (!isSeq(seq) || seq < 1) throw bad(`${at(where, index)}.seq must be a positive integer`);
  if (typeof dev !== 'string' || !deviceIds.has(dev)) throw bad(`${at(where, index)}.dev must be a device id`);
  if (!isSeq(ts)) throw bad(`${at(where, index)}.ts must be a non-negative integer (ms)`);
  const rec: RawRecord = { seq, dev, ts, vals: validateValues(r.vals, where, index) };
  if (r.tags !== undefined) rec.tags = validateTags(r.tags, where, index);
  if (r.dseq !== undefined) {
    if (!isSeq(r.dseq)) throw bad(`${at(where, index)}.dseq must be a non-negative integer`);
    rec.dseq = r.dseq;
  }
  if (r.fl !== undefined) {
    if (!isSeq(r.fl)) throw bad(`${at(where, index)}.fl must be a non-negative integer`);
    rec.fl = r.fl;
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

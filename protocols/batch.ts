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
  const body = encoder.encode({ recs, aggs });
  const env = { v: b.v ?? BATCH_VERSION, gw: b.gw, inc: b.inc, first: cborInt(b.first), last: cborInt(b.last), body, crc: crc32(body) };
  return Buffer.from(encoder.encode(env));
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
  let prev = first - 1;
  const recs = body.recs.map((r, i) => {
    const rec = validateRawRecord(r, `recs[${i}]`);
    if (rec.seq <= prev || rec.seq > last) throw bad(`recs[${i}].seq ${rec.seq} is out of order or outside [${first}, ${last}]`);
    prev = rec.seq;
    return rec;
  });
  // Raw records and aggregates share the gateway's one sequence space: a number is used once.
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

export function validateRawRecord(r: unknown, where = 'record'): RawRecord {
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

export function validateAggRecord(a: unknown, where = 'aggregate'): AggRecord {
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

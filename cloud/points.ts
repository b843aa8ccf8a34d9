/**
 * Batch records → InfluxDB points (ARCHITECTURE.md "InfluxDB schema").
 *
 * Raw reading → measurement `telemetry`, tags `gateway`, `device` + the reading's own tags, one field
 * per metric (numbers as float fields, booleans as boolean fields).
 * Timestamp (ns) = ts_ms * 1e6 + (id mod 1e6), where id is the device's own sequence number (`dseq`)
 * when it sent one, else the gateway sequence. Why: InfluxDB identifies a point by series + time, so
 * two distinct readings of one device in the same millisecond would otherwise collapse into one point
 * (guarantee 3); the sub-millisecond offset separates them. A replayed record lands on exactly the
 * same point and overwrites itself. Preferring the device's sequence also makes an MQTT QoS 1
 * retransmission (same reading, new gateway sequence, e.g. after the gateway restarted before its
 * PUBACK reached the device) overwrite itself instead of adding a duplicate point.
 * Only readings of one device 1e6 sequence numbers apart inside one millisecond could collide.
 * Readers that ask for `epoch=ms` still see the reading's own millisecond.
 *
 * Window aggregate → measurement `telemetry_<win>`, tags `gateway`, `device`, fields
 * `<metric>_count` (integer), `_min`, `_max`, `_mean`, `_sum`, `_last` (absent ones omitted),
 * timestamp = window start (ns). A later revision of the same window writes the same point and
 * overwrites the earlier one.
 */
import type { AggRecord, RawRecord } from '../protocols/batch.js';
import { escapeKey, escapeTagValue, type FieldValue, type LinePoint } from './line-protocol.js';
import { SluiceError } from '../protocols/errors.js';

export const RAW_MEASUREMENT = 'telemetry';
export const SEQ_OFFSET_MODULUS = 1_000_000;

export function aggMeasurement(win: string): string {
  return `${RAW_MEASUREMENT}_${win}`;
}

/** Nanosecond timestamp of a raw record: its millisecond plus a per-reading sub-millisecond offset. */
export function rawTimestampNs(ts: number, id: number): bigint {
  return BigInt(ts) * 1_000_000n + BigInt(id % SEQ_OFFSET_MODULUS);
}

export function msToNs(ms: number): bigint {
  return BigInt(ms) * 1_000_000n;
}

export function rawToPoint(gateway: string, r: RawRecord): LinePoint {
  // Record tags first so the reserved `gateway`/`device` tags always win.
  const tags: Record<string, string> = { ...(r.tags ?? {}), gateway, device: r.dev };
  const fields: Record<string, FieldValue> = {};
  for (const [k, v] of Object.entries(r.vals)) fields[k] = v;
  return { measurement: RAW_MEASUREMENT, tags, fields, ts: rawTimestampNs(r.ts, r.dseq ?? r.seq) };
}

export function aggToPoint(gateway: string, a: AggRecord): LinePoint {
  const fields: Record<string, FieldValue> = {};
  for (const [metric, s] of Object.entries(a.aggs)) {
    fields[`${metric}_count`] = { int: s.count };
    if (s.min !== undefined) fields[`${metric}_min`] = s.min;
    if (s.max !== undefined) fields[`${metric}_max`] = s.max;
    fields[`${metric}_mean`] = s.mean;
    if (s.sum !== undefined) fields[`${metric}_sum`] = s.sum;
    if (s.last !== undefined) fields[`${metric}_last`] = s.last;
  }
  return { measurement: aggMeasurement(a.win), tags: { gateway, device: a.dev }, fields, ts: msToNs(a.start) };
}

/** `s` as one flat string (a cached piece is then copied whole into each line, not walked as a tree). */
function flat(s: string): string {
  return Object.keys({ [s]: 0 })[0];
}

/** Bound of the caches below (entries); a cache that reaches it is emptied and refilled. */
const CACHE_MAX = 50_000;

/** A field key as it starts its field: after the space that ends the tags, or after a comma. */
interface FieldStart {
  first: string;
  next: string;
}

/** Field key → its escaped starts; null when the key escapes to nothing (the field is skipped). */
const fieldStarts = new Map<string, FieldStart | null>();

function fieldStart(k: string): FieldStart | null {
  let f = fieldStarts.get(k);
  if (f === undefined) {
    if (fieldStarts.size >= CACHE_MAX) fieldStarts.clear();
    const ek = escapeKey(k);
    f = ek.length === 0 ? null : { first: flat(` ${ek}=`), next: flat(`,${ek}=`) };
    fieldStarts.set(k, f);
  }
  return f;
}

/** Gateway → device → `telemetry,device=…,gateway=…`, the start of the line of a reading without tags. */
const prefixes = new Map<string, Map<string, string>>();
let prefixCount = 0;

function untaggedPrefix(gateway: string, dev: string): string {
  let byDevice = prefixes.get(gateway);
  if (byDevice === undefined) {
    byDevice = new Map();
    prefixes.set(gateway, byDevice);
  }
  let p = byDevice.get(dev);
  if (p === undefined) {
    if (prefixCount >= CACHE_MAX) {
      prefixes.clear();
      prefixes.set(gateway, byDevice);
      byDevice.clear();
      prefixCount = 0;
    }
    p = RAW_MEASUREMENT;
    // 'device' < 'gateway': sorted order without sorting.
    const d = escapeTagValue(dev);
    const g = escapeTagValue(gateway);
    if (d.length > 0) p += `,device=${d}`;
    if (g.length > 0) p += `,gateway=${g}`;
    p = flat(p);
    byDevice.set(dev, p);
    prefixCount++;
  }
  return p;
}

/** Escaped tag keys, and device/gateway ids (tag values that repeat on every line). */
const escaped = new Map<string, string>();

function escapedKey(s: string): string {
  let e = escaped.get(s);
  if (e === undefined) {
    if (escaped.size >= CACHE_MAX) escaped.clear();
    e = escapeKey(s);
    escaped.set(s, e);
  }
  return e;
}

const POW10 = [1, 10, 100, 1000, 10000];

/**
 * String(v) of a finite number (the shortest decimal that reads back as v, as toLine writes it),
 * faster for the numbers sensors send. String(v) of a non-integer runs V8's general shortest-double
 * algorithm, ~0.2 µs here, as much as the rest of a line. Most readings have a few decimals: for
 * |v| < 1e6 the shortest decimal with at most 4 decimals is found exactly (m / 10^k === v means the
 * decimal m·10^-k reads back as v, and k rises from 0, so the first found is the shortest; all
 * these integers and powers of ten are exact doubles) and built from two small integers, whose
 * conversion is cheap. Anything else (more decimals, larger, -0) is String(v). A property test
 * holds the two to the same output.
 */
export function decimal(v: number): string {
  if (v > -1e6 && v < 1e6) {
    for (let k = 0; k <= 4; k++) {
      const p = POW10[k];
      const m = Math.round(v * p);
      if (m / p !== v) continue;
      if (k === 0 || m === 0) break; // integers (and ±0) convert fast as they are
      const a = m < 0 ? -m : m;
      const ip = Math.floor(a / p);
      const f = String(a - ip * p);
      return `${m < 0 ? '-' : ''}${ip}.${f.length < k ? ZEROS[k - f.length] : ''}${f}`;
    }
  }
  return String(v);
}

/** ZEROS[n]: n zeros, to left-pad digits to a fixed width. */
const ZEROS = ['', '0', '00', '000', '0000', '00000', '000000', '0000000'];

let msHigh = -1;
let msHighDigits = '';

/**
 * String(ts) for a millisecond timestamp. Why not String(ts) itself: a 13-digit number is a heap
 * double, and its conversion runs the shortest-double algorithm (~150 ns, as much as the rest of
 * the line). Split at 10^7 ms (~2.8 h), the high part rarely changes (memoised) and the low part is
 * a small integer, which converts fast.
 */
function msDigits(ts: number): string {
  if (!(ts >= 1e7 && Number.isSafeInteger(ts))) return String(ts);
  let high = Math.floor(ts / 1e7);
  let low = ts - high * 1e7;
  // ts / 1e7 is rounded: correct the quotient by one when that crossed a multiple of 1e7.
  if (low < 0) {
    high--;
    low += 1e7;
  } else if (low >= 1e7) {
    high++;
    low -= 1e7;
  }
  if (high !== msHigh) {
    msHigh = high;
    msHighDigits = String(high);
  }
  const l = String(low);
  return msHighDigits + ZEROS[7 - l.length] + l;
}

/**
 * The hot path of ingest: one raw record straight to its line, without the intermediate LinePoint,
 * BigInt or per-line sorting of the two fixed tags; the start of the line (measurement and the two
 * fixed tags) and each field key's escaped form are cached. Produces exactly
 * `toLine(rawToPoint(gw, r))` (a test holds it to that).
 */
export function rawToLine(gateway: string, r: RawRecord): string {
  let line: string;
  if (r.tags === undefined) line = untaggedPrefix(gateway, r.dev);
  else {
    line = RAW_MEASUREMENT;
    const tags: Record<string, string> = { ...r.tags, gateway, device: r.dev };
    for (const k of Object.keys(tags).sort()) {
      const ek = escapedKey(k);
      const ev = k === 'device' || k === 'gateway' ? escapedKey(tags[k]) : escapeTagValue(tags[k]);
      if (ek.length === 0 || ev.length === 0) continue;
      line += `,${ek}=${ev}`;
    }
  }
  let first = true;
  const vals = r.vals;
  for (const k in vals) {
    const v = vals[k];
    const f = fieldStart(k);
    if (f === null) continue;
    line += first ? f.first : f.next;
    if (typeof v === 'boolean') line += v ? 'true' : 'false';
    else {
      if (!Number.isFinite(v)) throw new SluiceError('SLUICE_BAD_BATCH', `field "${k}" is not a finite number`);
      line += decimal(v);
    }
    first = false;
  }
  if (first) throw new SluiceError('SLUICE_BAD_BATCH', `point of "${RAW_MEASUREMENT}" has no fields`);
  const off = String((r.dseq ?? r.seq) % SEQ_OFFSET_MODULUS);
  // ts·1e6 + off as a decimal string: ts followed by off on six digits (ts = 0: off alone).
  line += r.ts === 0 ? ` ${off}` : ` ${msDigits(r.ts)}${off.length < 6 ? ZEROS[6 - off.length] : ''}${off}`;
  return line;
}

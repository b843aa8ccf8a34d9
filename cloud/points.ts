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

const escapeCache = new Map<string, string>();
function cachedKey(s: string): string {
  let e = escapeCache.get(s);
  if (e === undefined) {
    if (escapeCache.size > 50_000) escapeCache.clear();
    e = escapeKey(s);
    escapeCache.set(s, e);
  }
  return e;
}

/**
 * The hot path of ingest: one raw record straight to its line, without the intermediate LinePoint,
 * BigInt or per-line sorting of the two fixed tags. Produces exactly `toLine(rawToPoint(gw, r))`
 * (a test holds it to that).
 */
export function rawToLine(gateway: string, r: RawRecord): string {
  let line = RAW_MEASUREMENT;
  const g = cachedKey(gateway);
  const d = cachedKey(r.dev);
  if (r.tags === undefined) {
    // 'device' < 'gateway': sorted order without sorting.
    if (d.length > 0) line += `,device=${d}`;
    if (g.length > 0) line += `,gateway=${g}`;
  } else {
    const tags: Record<string, string> = { ...r.tags, gateway, device: r.dev };
    for (const k of Object.keys(tags).sort()) {
      const ek = cachedKey(k);
      const ev = k === 'device' ? d : k === 'gateway' ? g : escapeTagValue(tags[k]);
      if (ek.length === 0 || ev.length === 0) continue;
      line += `,${ek}=${ev}`;
    }
  }
  let sep = ' ';
  for (const k in r.vals) {
    const v = r.vals[k];
    const ek = cachedKey(k);
    if (ek.length === 0) continue;
    if (typeof v === 'boolean') line += `${sep}${ek}=${v ? 'true' : 'false'}`;
    else {
      if (!Number.isFinite(v)) throw new SluiceError('SLUICE_BAD_BATCH', `field "${k}" is not a finite number`);
      line += `${sep}${ek}=${v}`;
    }
    sep = ',';
  }
  if (sep === ' ') throw new SluiceError('SLUICE_BAD_BATCH', `point of "${RAW_MEASUREMENT}" has no fields`);
  const off = (r.dseq ?? r.seq) % SEQ_OFFSET_MODULUS;
  // ts·1e6 + off as a decimal string: ts followed by off on six digits (ts = 0: off alone).
  line += r.ts === 0 ? ` ${off}` : ` ${r.ts}${String(off).padStart(6, '0')}`;
  return line;
}

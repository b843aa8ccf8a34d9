/**
 * InfluxDB line protocol builder (the format 1.x `/write` and 2.x/3.x `/api/v2/write` accept).
 *
 *   measurement[,tag=value...] field=value[,field=value...] timestamp
 *
 * Guarantees:
 * - Every line is exactly one line: newline, carriage return and tab inside names or tag values are
 *   written as the two-character escapes `\n`, `\r`, `\t` (what @influxdata/influxdb-client does), so a
 *   hostile tag value can never start a second point.
 * - Measurement: `,` and space escaped. Tag keys, tag values, field keys: `,`, `=` and space escaped.
 *   String field values: double-quoted, `"` and `\` escaped.
 * - InfluxDB 1.x cannot express a tag value (or key) that ends in a backslash (the backslash would
 *   escape the separator after it); trailing backslashes are therefore dropped, and a tag whose value
 *   ends up empty is omitted (line protocol has no empty tag values).
 * - Numbers are float fields unless given as `{ int: n }`; non-finite numbers are refused
 *   (InfluxDB cannot store NaN/Infinity) with SLUICE_BAD_BATCH.
 * - Timestamps are integers in nanoseconds, passed as bigint (ns since the epoch does not fit in a
 *   JS number exactly) or a decimal string.
 */
import { SluiceError } from '../protocols/errors.js';

/** A field value: float (number), integer ({ int }), boolean, or string ({ str }). */
export type FieldValue = number | boolean | { int: number | bigint } | { str: string };

export interface LinePoint {
  measurement: string;
  tags?: Record<string, string | undefined>;
  fields: Record<string, FieldValue | undefined>;
  /** Nanoseconds since the epoch. Omitted: the server assigns its own time. */
  ts?: bigint | string;
}

const CONTROL: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeWith(s: string, specials: RegExp): string {
  return s.replace(specials, (c) => CONTROL[c] ?? `\\${c}`);
}

function dropTrailingBackslashes(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0x5c) end--;
  return end === s.length ? s : s.slice(0, end);
}

export function escapeMeasurement(s: string): string {
  return escapeWith(dropTrailingBackslashes(s), /[, \n\r\t]/g);
}

/** Tag keys, tag values and field keys share one escaping rule. */
export function escapeKey(s: string): string {
  return escapeWith(dropTrailingBackslashes(s), /[,= \n\r\t]/g);
}

export const escapeTagValue = escapeKey;

export function escapeStringField(s: string): string {
  return `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

function formatField(name: string, v: FieldValue): string {
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new SluiceError('SLUICE_BAD_BATCH', `field "${name}" is not a finite number`);
    // String(n) gives the shortest exact representation ("21.5", "1e+21", "1.5e-7"); InfluxDB parses all.
    return String(v);
  }
  if ('int' in v) {
    const i = typeof v.int === 'bigint' ? v.int : BigInt(Math.trunc(v.int));
    return `${i}i`;
  }
  return escapeStringField(v.str);
}

/** One point → one line. Throws SLUICE_BAD_BATCH when the point has no fields. */
export function toLine(p: LinePoint): string {
  let line = escapeMeasurement(p.measurement);
  if (line.length === 0) throw new SluiceError('SLUICE_BAD_BATCH', 'point has an empty measurement name');
  if (p.tags) {
    // Sorted tag keys are what InfluxDB recommends (and what it does itself): cheaper series lookup.
    for (const k of Object.keys(p.tags).sort()) {
      const v = p.tags[k];
      if (v === undefined) continue;
      const ek = escapeKey(k);
      const ev = escapeTagValue(v);
      if (ek.length === 0 || ev.length === 0) continue;
      line += `,${ek}=${ev}`;
    }
  }
  const fields: string[] = [];
  for (const [k, v] of Object.entries(p.fields)) {
    if (v === undefined) continue;
    const ek = escapeKey(k);
    if (ek.length === 0) continue;
    fields.push(`${ek}=${formatField(k, v)}`);
  }
  if (fields.length === 0) throw new SluiceError('SLUICE_BAD_BATCH', `point of "${p.measurement}" has no fields`);
  line += ` ${fields.join(',')}`;
  if (p.ts !== undefined) line += ` ${p.ts}`;
  return line;
}

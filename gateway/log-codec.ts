/**
 * On-disk encoding of one log record (see gateway/log.ts for the key layout).
 *
 *   value = crc32 (4 bytes, big-endian, over the CBOR bytes) ‖ CBOR array
 *   raw reading:  [0, dev, ts, vals, tags | null, dseq | null, fl]
 *   aggregate:    [1, dev, win, start, end, rev, aggs]
 *
 * The sequence number lives in the key, not the value. Arrays rather than maps keep a reading to
 * a few dozen bytes on an SD card. A record whose checksum or shape does not verify is reported
 * as corrupt (SLUICE_LOG_CORRUPT), never thrown past the reader.
 */
import { Decoder, Encoder } from 'cbor-x';
import { crc32 } from 'node:zlib';
import { SluiceError } from '../protocols/errors.js';
import type { AggRecord, RawRecord } from '../protocols/batch.js';

export type LogEntry = ({ kind: 'raw' } & Omit<RawRecord, 'seq'>) | ({ kind: 'agg' } & Omit<AggRecord, 'seq'>);
export type LogRecord = ({ kind: 'raw' } & RawRecord) | ({ kind: 'agg' } & AggRecord);

const encoder = new Encoder({ useRecords: false } as ConstructorParameters<typeof Encoder>[0]);
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true } as ConstructorParameters<typeof Decoder>[0]);

export const KEY_BYTES = 9;

/** Record key: 'r' + 8-byte big-endian sequence, so byte order is sequence order. */
export function recordKey(seq: number, prefix = 0x72 /* r */): Buffer {
  const k = Buffer.allocUnsafe(KEY_BYTES);
  k[0] = prefix;
  // Two 32-bit halves rather than a BigInt per key: sequences stay below 2^53.
  k.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), 1);
  k.writeUInt32BE(seq >>> 0, 5);
  return k;
}

export function seqOfKey(key: Uint8Array): number {
  const hi = ((key[1] << 24) | (key[2] << 16) | (key[3] << 8) | key[4]) >>> 0;
  const lo = ((key[5] << 24) | (key[6] << 16) | (key[7] << 8) | key[8]) >>> 0;
  return hi * 0x1_0000_0000 + lo;
}

export function encodeEntry(e: LogEntry): Buffer {
  if (e.kind === 'raw') return encodeRaw(e);
  const body = encoder.encode([1, e.dev, e.win, e.start, e.end, e.rev, e.aggs]);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(crc32(body), 0);
  out.set(body, 4);
  return out;
}

/**
 * The raw reading, the hot path (one per ingested reading): written straight into a scratch buffer
 * instead of through a temporary array and cbor-x. It writes the CBOR items cbor-x writes for the
 * same values (integers below 2^32 as integers, every other number as a float64, strings as UTF-8
 * text, booleans, null), with minimal map headers; decodeEntry reads both the same way, and records
 * written by earlier versions are untouched. test/unit/log-codec.test.ts holds the two to each other.
 */
function encodeRaw(e: { dev: string; ts: number; vals: Record<string, number | boolean>; tags?: Record<string, string>; dseq?: number; fl?: number }): Buffer {
  w.pos = 4;
  w.ensure(64);
  w.buf[w.pos++] = 0x87; // array(7)
  w.buf[w.pos++] = 0x00; // kind 0: raw
  w.str(e.dev);
  w.num(e.ts);
  const vals = e.vals;
  let n = 0;
  for (const _ in vals) n++;
  w.head(0xa0, n);
  for (const k in vals) {
    w.str(k);
    const v = vals[k];
    if (typeof v === 'boolean') {
      w.ensure(1);
      w.buf[w.pos++] = v ? 0xf5 : 0xf4;
    } else w.num(v);
  }
  if (e.tags) {
    const tags = e.tags;
    let t = 0;
    for (const _ in tags) t++;
    w.head(0xa0, t);
    for (const k in tags) {
      w.str(k);
      w.str(tags[k]);
    }
  } else w.byte(0xf6);
  if (e.dseq !== undefined) w.num(e.dseq);
  else w.byte(0xf6);
  w.num(e.fl ?? 0);
  const b = w.buf;
  const end = w.pos;
  const out = Buffer.allocUnsafe(end);
  if (end > 256) {
    out.writeUInt32BE(crc32(b.subarray(4, end)), 0);
    b.copy(out, 4, 4, end);
    return out;
  }
  // A reading is a few dozen bytes: a table CRC and a byte loop beat the native calls' overhead.
  let c = 0xffffffff;
  for (let i = 4; i < end; i++) {
    const x = b[i];
    c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8);
    out[i] = x;
  }
  out.writeUInt32BE((c ^ 0xffffffff) >>> 0, 0);
  return out;
}

/** CRC-32 (IEEE 802.3, zlib's crc32) lookup table. */
const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** A growable scratch buffer for encodeRaw (single-threaded: one encode at a time). */
const w = {
  buf: Buffer.allocUnsafe(4096),
  pos: 0,
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  },
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  },
  /** Major type header (`major` is the initial byte's top three bits, e.g. 0xa0 for a map). */
  head(major: number, n: number): void {
    this.ensure(5);
    const b = this.buf;
    if (n < 24) b[this.pos++] = major | n;
    else if (n < 0x100) {
      b[this.pos++] = major | 24;
      b[this.pos++] = n;
    } else if (n < 0x10000) {
      b[this.pos++] = major | 25;
      b.writeUInt16BE(n, this.pos);
      this.pos += 2;
    } else {
      b[this.pos++] = major | 26;
      b.writeUInt32BE(n, this.pos);
      this.pos += 4;
    }
  },
  num(v: number): void {
    // As cbor-x: an integer within ±2^32 is a CBOR integer (−0 becomes 0), anything else a float64.
    if (Number.isInteger(v) && v >= -0x1_0000_0000 && v < 0x1_0000_0000) {
      if (v >= 0) this.head(0x00, v);
      else this.head(0x20, -1 - v);
      return;
    }
    this.ensure(9);
    this.buf[this.pos++] = 0xfb;
    this.buf.writeDoubleBE(v, this.pos);
    this.pos += 8;
  },
  str(s: string): void {
    const len = s.length;
    // Device ids, metric and tag names are ASCII by the protocol's grammar: copy them by hand.
    if (len < 24) {
      this.ensure(1 + len);
      const b = this.buf;
      const start = this.pos;
      b[this.pos++] = 0x60 | len;
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[this.pos++] = c;
      }
      if (i === len) return;
      this.pos = start;
    }
    const bytes = Buffer.byteLength(s, 'utf8');
    this.head(0x60, bytes);
    this.ensure(bytes);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  },
};

export function decodeEntry(seq: number, value: Uint8Array): LogRecord {
  if (value.length < 5) throw corrupt(seq, 'record shorter than its checksum');
  const buf = Buffer.from(value.buffer, value.byteOffset, value.length);
  const body = buf.subarray(4);
  if (buf.readUInt32BE(0) !== crc32(body)) throw corrupt(seq, 'checksum mismatch');
  let a: unknown;
  try {
    a = decoder.decode(body);
  } catch (err) {
    throw corrupt(seq, `undecodable CBOR: ${(err as Error).message}`);
  }
  if (!Array.isArray(a)) throw corrupt(seq, 'not an array');
  if (a[0] === 0 && a.length === 7) {
    const r: LogRecord = { kind: 'raw', seq, dev: a[1], ts: a[2], vals: a[3] };
    if (a[4] !== null) r.tags = a[4];
    if (a[5] !== null) r.dseq = a[5];
    if (a[6]) r.fl = a[6];
    return r;
  }
  if (a[0] === 1 && a.length === 7) {
    return { kind: 'agg', seq, dev: a[1], win: a[2], start: a[3], end: a[4], rev: a[5], aggs: a[6] };
  }
  throw corrupt(seq, 'unknown record kind');
}

function corrupt(seq: number, why: string): SluiceError {
  return new SluiceError('SLUICE_LOG_CORRUPT', `log record ${seq} is corrupt: ${why}`, { detail: { seq } });
}

/**
 * On-disk encoding of the log (see gateway/log.ts for the key layout).
 *
 * Frames (written since 0.2): one LevelDB entry per run of consecutive records of a group commit,
 * keyed by the sequence of its last record. Reading a backlog then costs one LevelDB entry per few
 * hundred records instead of one per record (classic-level spends ~3 µs of main-thread time per
 * entry it hands to JavaScript), and a group commit writes a handful of entries instead of one per
 * reading.
 *
 *   frame  = "SLF2" ‖ u32 count ‖ u32 crc32(records) ‖ record*
 *   record = u32 len ‖ u32 crc32(body) ‖ body            (len = body bytes)
 *   body   = u32 seq_hi ‖ u32 seq_lo ‖ u8 kind ‖ u8 fl ‖ CBOR map
 *
 * The CBOR map is the record exactly as a batch carries it (protocols/batch.ts), minus `seq`:
 *   raw (kind 0): { dev, ts, vals, tags?, dseq?, fl? }     agg (kind 1): { dev, win, start, end, rev, aggs }
 * so the forwarder builds a batch by copying verified bytes (adding `seq` to each map header)
 * instead of decoding and re-encoding every record. `fl` is repeated outside the CBOR so the
 * forwarder can tell the few records it must re-stamp (gateway/clock.ts) without decoding.
 * The frame's checksum is checked with one native call per frame; only when it fails are the
 * records' own checksums computed, so that a damaged record is quarantined alone and the rest of
 * its frame delivered.
 *
 * Legacy entries (before 0.2): one record per entry, keyed by its sequence,
 *   value = crc32 (4 bytes, big-endian, over the CBOR bytes) ‖ CBOR array
 *   raw reading:  [0, dev, ts, vals, tags | null, dseq | null, fl]
 *   aggregate:    [1, dev, win, start, end, rev, aggs]
 * are still read (byte 4 is the array header 0x87; a frame has 0x00 there), so a log written by an
 * older version drains after an upgrade.
 *
 * A record whose checksum or shape does not verify is reported as corrupt (SLUICE_LOG_CORRUPT or a
 * CorruptPiece), never thrown past the reader.
 */
import { Decoder } from 'cbor-x';
import { crc32 } from 'node:zlib';
import { crcTable } from '../protocols/crc-table.js';
import { SluiceError } from '../protocols/errors.js';
import { cborDecoder, cborEncoder, cborInt } from '../protocols/cbor.js';
import { FLAG_CLOCK_UNSYNCED, type AggRecord, type RawRecord } from '../protocols/batch.js';

export type LogEntry = ({ kind: 'raw' } & Omit<RawRecord, 'seq'>) | ({ kind: 'agg' } & Omit<AggRecord, 'seq'>);
export type LogRecord = ({ kind: 'raw' } & RawRecord) | ({ kind: 'agg' } & AggRecord);

/** Decoder of legacy entries (as they were written). */
const legacyDecoder = new Decoder({ useRecords: false, mapsAsObjects: true } as ConstructorParameters<typeof Decoder>[0]);

export const KEY_BYTES = 9;
/** Bytes before a frame's first record: magic, count, checksum. */
export const FRAME_HEAD = 12;
/** Bytes before a record's body: length and checksum. */
export const RECORD_HEAD = 8;
/** Bytes of a body before its CBOR map: sequence, kind, flags. */
const BODY_HEAD = 10;
/** A frame is closed at this size; a damaged LevelDB block then costs at most one frame's records. */
export const FRAME_MAX_BYTES = 32 * 1024;
/** LevelDB's per-entry overhead is small; count the key and value and a few bytes of framing. */
export const ENTRY_OVERHEAD = 8;
/** What a frame costs beyond its records: counted against its first record (see WireRecord.size). */
export const FRAME_OVERHEAD = FRAME_HEAD + KEY_BYTES + ENTRY_OVERHEAD;
const MAGIC = 0x534c4632; // "SLF2"
const EMPTY = Buffer.alloc(0);

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

/** One record as stored: what the forwarder copies into a batch. */
export interface WireRecord {
  seq: number;
  kind: 'raw' | 'agg';
  /** The raw reading's flags (protocols/batch.ts FLAG_*); 0 for aggregates. */
  fl: number;
  /**
   * The stored entry the record lies in; its CBOR map without `seq` is `frame[mapStart, end)`.
   * (Offsets rather than a Buffer view per record: a backlog drains through here at 100k+
   * records/s, and each view is one more object for the GC.)
   */
  frame: Buffer;
  mapStart: number;
  /**
   * Bytes this record accounts for in the backlog: its own bytes, plus the frame's overhead (magic,
   * key, LevelDB framing) for the first record of a frame, so the sizes of a frame's records add up
   * to what the frame occupies and acks can free exact amounts record by record.
   */
  size: number;
  /** Where the record sits in its frame (start inclusive, end exclusive); start is -1 for a legacy entry. */
  start: number;
  end: number;
}

/** A stretch of a frame that does not verify. */
export interface CorruptPiece {
  /** Best guess of the (first) sequence it held: checksums do not protect a damaged sequence. */
  seq: number;
  /** Records it held (1 for a record that fails its checksum; more when the framing itself is damaged). */
  records: number;
  reason: string;
  start: number;
  end: number;
  size: number;
}

/**
 * Encode one record (sequence assigned) as its frame piece: length, checksum, body. The hot path of
 * ingest for raw readings: written straight into a scratch buffer, no intermediate objects.
 */
export function encodeRecord(seq: number, e: LogEntry): Buffer {
  const end = encodeBody(seq, e);
  const out = Buffer.allocUnsafe(end);
  copyWithCrc(out, 0, end);
  return out;
}

/** A growable byte buffer that records are appended to (appendRecord). */
export interface RecordBuffer {
  buf: Buffer;
  len: number;
}

/**
 * encodeRecord() straight onto the end of `dst` (grown as needed): no Buffer per record. Returns
 * the record's bytes.
 */
export function appendRecord(dst: RecordBuffer, seq: number, e: LogEntry): number {
  const end = encodeBody(seq, e);
  if (dst.len + end > dst.buf.length) {
    const next = Buffer.allocUnsafe(Math.max(dst.buf.length * 2, dst.len + end));
    next.set(dst.buf.subarray(0, dst.len));
    dst.buf = next;
  }
  copyWithCrc(dst.buf, dst.len, end);
  dst.len += end;
  return end;
}

/** Encode a record's body into the scratch writer after RECORD_HEAD bytes; returns its end. */
function encodeBody(seq: number, e: LogEntry): number {
  w.pos = RECORD_HEAD;
  w.ensure(BODY_HEAD + 64);
  const b = w.buf;
  b.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), w.pos);
  b.writeUInt32BE(seq >>> 0, w.pos + 4);
  if (e.kind === 'raw') {
    b[w.pos + 8] = 0;
    b[w.pos + 9] = (e.fl ?? 0) & 0xff;
    w.pos += BODY_HEAD;
    writeRawMap(e);
  } else {
    b[w.pos + 8] = 1;
    b[w.pos + 9] = 0;
    w.pos += BODY_HEAD;
    const m = cborEncoder.encode({ dev: e.dev, win: e.win, start: cborInt(e.start), end: cborInt(e.end), rev: e.rev, aggs: e.aggs });
    w.ensure(m.length);
    w.buf.set(m, w.pos);
    w.pos += m.length;
  }
  return w.pos;
}

/** Copy the scratch record [RECORD_HEAD, end) to out[at..] behind its length and checksum. */
function copyWithCrc(out: Buffer, at: number, end: number): void {
  const src = w.buf;
  // A reading is a few dozen bytes: a table CRC and a byte loop beat the native calls' overhead.
  let c = 0xffffffff;
  for (let i = RECORD_HEAD; i < end; i++) {
    const x = src[i];
    c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8);
    out[at + i] = x;
  }
  out.writeUInt32BE(end - RECORD_HEAD, at);
  out.writeUInt32BE((c ^ 0xffffffff) >>> 0, at + 4);
}

/** The raw reading's map, as cbor-x would write it with the batch encoder's integer rules. */
function writeRawMap(e: { dev: string; ts: number; vals: Record<string, number | boolean>; tags?: Record<string, string>; dseq?: number; fl?: number }): void {
  const fl = e.fl ?? 0;
  w.head(0xa0, 3 + (e.tags ? 1 : 0) + (e.dseq !== undefined ? 1 : 0) + (fl ? 1 : 0));
  w.key3(0x64, 0x65, 0x76); // "dev"
  w.str(e.dev);
  w.key2(0x74, 0x73); // "ts"
  w.int(e.ts);
  w.key4(0x76, 0x61, 0x6c, 0x73); // "vals"
  const vals = e.vals;
  let n = 0;
  for (const _ in vals) n++;
  w.head(0xa0, n);
  for (const k in vals) {
    w.str(k);
    const v = vals[k];
    if (typeof v === 'boolean') w.byte(v ? 0xf5 : 0xf4);
    else w.num(v);
  }
  if (e.tags) {
    w.key4(0x74, 0x61, 0x67, 0x73); // "tags"
    const tags = e.tags;
    let t = 0;
    for (const _ in tags) t++;
    w.head(0xa0, t);
    for (const k in tags) {
      w.str(k);
      w.str(tags[k]);
    }
  }
  if (e.dseq !== undefined) {
    w.key4(0x64, 0x73, 0x65, 0x71); // "dseq"
    w.int(e.dseq);
  }
  if (fl) {
    w.key2(0x66, 0x6c); // "fl"
    w.int(fl);
  }
}

/**
 * Build a frame from consecutive record pieces (encodeRecord). `pieces[from, to)`.
 */
export function encodeFrame(pieces: Buffer[], from: number, to: number, bytes: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEAD + bytes);
  let pos = FRAME_HEAD;
  for (let i = from; i < to; i++) {
    // set(), not copy(): Buffer#copy makes a Uint8Array view per call (an allocation per record).
    out.set(pieces[i], pos);
    pos += pieces[i].length;
  }
  return sealFrame(out, to - from);
}

/** A frame from records lying back to back in `records[start, end)` (`count` of them). */
export function frameOf(records: Uint8Array, start: number, end: number, count: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEAD + end - start);
  out.set(records.subarray(start, end), FRAME_HEAD);
  return sealFrame(out, count);
}

/** Write a frame's head (magic, record count, checksum of its records) in front of its records. */
function sealFrame(out: Buffer, count: number): Buffer {
  out.writeUInt32BE(MAGIC, 0);
  out.writeUInt32BE(count, 4);
  out.writeUInt32BE(crc32(out.subarray(FRAME_HEAD)), 8);
  return out;
}

export function isLegacyEntry(value: Uint8Array): boolean {
  return value.length < FRAME_HEAD || value[4] === 0x87 || ((value[0] << 24) | (value[1] << 16) | (value[2] << 8) | value[3]) >>> 0 !== MAGIC;
}

/**
 * Where parseEntry hands each verified record: its place in `frame` and its header fields, without
 * an object per record (a backlog drains through here at 100k+ records/s). Return false to stop.
 */
export interface RecordSink {
  record(frame: Buffer, start: number, mapStart: number, end: number, seq: number, kind: 0 | 1, fl: number, size: number): boolean;
}

/** A RecordSink that collects WireRecords. */
export function collect(into: WireRecord[]): RecordSink {
  return {
    record(frame, start, mapStart, end, seq, kind, fl, size) {
      into.push({ seq, kind: kind === 0 ? 'raw' : 'agg', fl, frame, mapStart, size, start, end });
      return true;
    },
  };
}

/**
 * Split one LevelDB entry of the record lane into its records: those with sequence > `after` that
 * verify go to `ok` (an array, or a RecordSink, which may stop the walk), damaged stretches to
 * `bad`. Never throws. `keySeq` is the entry's key sequence (a frame's last record, a legacy
 * entry's own). With `verify` false checksums are not computed and legacy entries are not decoded:
 * only the sequence, size, start and end are meant (counting at open). Returns false if the sink
 * stopped the walk before the end of the entry.
 */
export function parseEntry(keySeq: number, value: Uint8Array, after: number, ok: WireRecord[] | RecordSink, bad: CorruptPiece[], verify = true): boolean {
  const v = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.length);
  const sink = Array.isArray(ok) ? collect(ok) : ok;
  if (isLegacyEntry(v)) {
    if (keySeq <= after) return true;
    const size = KEY_BYTES + v.length + ENTRY_OVERHEAD;
    // Counting only: the sequence and size are all that is asked for.
    if (!verify) return sink.record(EMPTY, -1, 0, 0, keySeq, 0, 0, size);
    let rec: LogRecord;
    try {
      rec = decodeEntry(keySeq, v);
    } catch (err) {
      bad.push({ seq: keySeq, records: 1, reason: (err as SluiceError).message, start: 0, end: v.length, size });
      return true;
    }
    // Re-encoded in the current form, so that it is copied into batches like any other record.
    const piece = encodeRecord(rec.seq, rec);
    return sink.record(piece, -1, RECORD_HEAD + BODY_HEAD, piece.length, rec.seq, rec.kind === 'raw' ? 0 : 1, rec.kind === 'raw' ? (rec.fl ?? 0) & 0xff : 0, size);
  }
  const count = v.readUInt32BE(4);
  const end = v.length;
  // An intact frame (the common case): no record needs its own checksum computed.
  if (verify && crc32(v.subarray(FRAME_HEAD)) === v.readUInt32BE(8)) verify = false;
  // Damage found in this frame; a damaged record's sequence is inferred from its neighbours (the
  // records of a frame are consecutive when written), since its own bytes cannot be trusted.
  const damaged: CorruptPiece[] = [];
  let prevSeq = -1;
  /** Damaged pieces before the frame's first good record: numbered back from the next good one. */
  const unresolved: CorruptPiece[] = [];
  const resolve = (next: number) => {
    for (let k = unresolved.length - 1; k >= 0; k--) unresolved[k].seq = next - (unresolved.length - k);
    unresolved.length = 0;
  };
  let pos = FRAME_HEAD;
  let i = 0;
  let more = true;
  while (pos < end && more) {
    const overhead = pos === FRAME_HEAD ? FRAME_OVERHEAD : 0;
    const len = pos + RECORD_HEAD <= end ? v.readUInt32BE(pos) : -1;
    if (len < BODY_HEAD + 1 || pos + RECORD_HEAD + len > end) {
      // The framing itself is damaged: nothing after this point can be delimited.
      const piece = { seq: prevSeq >= 0 ? prevSeq + 1 : NaN, records: Math.max(1, count - i), reason: 'frame damaged: record length out of bounds', start: pos, end, size: end - pos + overhead };
      damaged.push(piece);
      if (prevSeq < 0) unresolved.push(piece);
      break;
    }
    const bodyStart = pos + RECORD_HEAD;
    const stop = bodyStart + len;
    const size = RECORD_HEAD + len + overhead;
    let good = v[bodyStart + 8] === 0 || v[bodyStart + 8] === 1;
    if (verify && good) {
      let c = 0xffffffff;
      for (let j = bodyStart; j < stop; j++) c = CRC_TABLE[(c ^ v[j]) & 0xff] ^ (c >>> 8);
      good = (c ^ 0xffffffff) >>> 0 === v.readUInt32BE(pos + 4);
    }
    if (good) {
      const seq = v.readUInt32BE(bodyStart) * 0x1_0000_0000 + v.readUInt32BE(bodyStart + 4);
      resolve(seq);
      prevSeq = seq;
      if (seq > after) more = sink.record(v, pos, bodyStart + BODY_HEAD, stop, seq, v[bodyStart + 8] as 0 | 1, v[bodyStart + 9], size);
    } else {
      const piece = { seq: prevSeq >= 0 ? prevSeq + 1 : NaN, records: 1, reason: 'checksum mismatch', start: pos, end: stop, size };
      damaged.push(piece);
      if (prevSeq < 0) unresolved.push(piece);
      else prevSeq++;
    }
    pos = stop;
    i++;
  }
  if (more) resolve(keySeq + 1);
  // Damage at or before the position asked for was behind the reader already (acknowledged).
  for (const d of damaged) if (d.seq > after && d.seq >= 0) bad.push(d);
  return more;
}

/** The record behind a WireRecord, decoded (replay, tests, re-stamping). */
export function decodeWire(r: WireRecord): LogRecord {
  let m: any;
  try {
    m = cborDecoder.decode(r.frame.subarray(r.mapStart, r.end));
  } catch (err) {
    throw corrupt(r.seq, `undecodable CBOR: ${(err as Error).message}`);
  }
  if (m === null || typeof m !== 'object') throw corrupt(r.seq, 'not a map');
  if (r.kind === 'raw') {
    const out: LogRecord = { kind: 'raw', seq: r.seq, dev: m.dev, ts: m.ts, vals: m.vals };
    if (m.tags !== undefined) out.tags = m.tags;
    if (m.dseq !== undefined) out.dseq = m.dseq;
    if (m.fl) out.fl = m.fl;
    return out;
  }
  return { kind: 'agg', seq: r.seq, dev: m.dev, win: m.win, start: m.start, end: m.end, rev: m.rev, aggs: m.aggs };
}

/** CRC-32 (IEEE 802.3, zlib's crc32) lookup table. */
const CRC_TABLE = crcTable(0xedb88320);

type Writer = ReturnType<typeof makeWriter>;

/** A growable scratch buffer for encodeRecord (single-threaded: one encode at a time). */
const w = makeWriter();

/** A growable buffer with the CBOR writing the log and batch bodies need. */
function makeWriter() {
  return {
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
    /** A map key of 2, 3 or 4 ASCII characters (text header included). */
    key2(a: number, b: number): void {
      this.ensure(3);
      const u = this.buf;
      u[this.pos] = 0x62;
      u[this.pos + 1] = a;
      u[this.pos + 2] = b;
      this.pos += 3;
    },
    key3(a: number, b: number, c: number): void {
      this.ensure(4);
      const u = this.buf;
      u[this.pos] = 0x63;
      u[this.pos + 1] = a;
      u[this.pos + 2] = b;
      u[this.pos + 3] = c;
      this.pos += 4;
    },
    key4(a: number, b: number, c: number, d: number): void {
      this.ensure(5);
      const u = this.buf;
      u[this.pos] = 0x64;
      u[this.pos + 1] = a;
      u[this.pos + 2] = b;
      u[this.pos + 3] = c;
      u[this.pos + 4] = d;
      this.pos += 5;
    },
    /** An integer field (ts, dseq, fl) as the batch encoder writes it (protocols/cbor.ts cborInt): a CBOR integer of any size. */
    int(v: number): void {
      if (!Number.isSafeInteger(v)) return this.num(v);
      if (v >= -0x1_0000_0000 && v < 0x1_0000_0000) return this.num(v);
      this.ensure(9);
      const neg = v < 0;
      const m = neg ? -1 - v : v;
      this.buf[this.pos++] = neg ? 0x3b : 0x1b;
      this.buf.writeUInt32BE(Math.floor(m / 0x1_0000_0000), this.pos);
      this.buf.writeUInt32BE(m >>> 0, this.pos + 4);
      this.pos += 8;
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
}

export function decodeEntry(seq: number, value: Uint8Array): LogRecord {
  if (value.length < 5) throw corrupt(seq, 'record shorter than its checksum');
  const buf = Buffer.from(value.buffer, value.byteOffset, value.length);
  const body = buf.subarray(4);
  if (buf.readUInt32BE(0) !== crc32(body)) throw corrupt(seq, 'checksum mismatch');
  let a: unknown;
  try {
    a = legacyDecoder.decode(body);
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

/**
 * Builds a batch body (protocols/batch.ts: CBOR map { recs, aggs }) from stored records as a
 * RecordSink, by copying their verified map bytes and adding `seq` to each map: no record is
 * decoded, no object made per record. `restamp` gets the (rare) records stamped while the clock was
 * unsynchronised, decoded; what it returns is encoded with the batch encoder. One builder per
 * forwarder, reused batch after batch (its buffer grows to the largest batch and stays).
 */
export class BatchBodyBuilder implements RecordSink {
  /** Records added since reset(). */
  count = 0;
  private readonly out: Writer = makeWriter();
  private raws = 0;
  /** Aggregates met in a raw lane: written after the raw records, in their own array. */
  private aggs: WireRecord[] = [];

  constructor(private readonly restamp?: (r: RawRecord) => RawRecord) {
    this.reset();
  }

  reset(): void {
    this.count = 0;
    this.raws = 0;
    this.aggs = [];
    // Room for the map header, "recs" and the largest array header, written once the count is known.
    this.out.pos = HEAD_ROOM;
  }

  record(frame: Buffer, start: number, mapStart: number, end: number, seq: number, kind: 0 | 1, fl: number, size: number): boolean {
    this.count++;
    if (kind === 1) {
      this.aggs.push({ seq, kind: 'agg', fl, frame, mapStart, size, start, end });
      return true;
    }
    this.raws++;
    if (this.restamp && (fl & FLAG_CLOCK_UNSYNCED) !== 0) {
      const { kind: _k, ...rec } = decodeWire({ seq, kind: 'raw', fl, frame, mapStart, size, start, end }) as Extract<LogRecord, { kind: 'raw' }>;
      const fixed = this.restamp(rec);
      const m = cborEncoder.encode({ ...fixed, seq: cborInt(fixed.seq), ts: cborInt(fixed.ts), ...(fixed.dseq === undefined ? {} : { dseq: cborInt(fixed.dseq) }) });
      this.out.ensure(m.length);
      this.out.buf.set(m, this.out.pos);
      this.out.pos += m.length;
      return true;
    }
    writeWithSeq(this.out, frame, mapStart, end, seq);
    return true;
  }

  add(r: WireRecord): void {
    this.record(r.frame, r.start, r.mapStart, r.end, r.seq, r.kind === 'raw' ? 0 : 1, r.fl, r.size);
  }

  /**
   * The body: a view of the builder's buffer, valid until its next reset() (encodeBatchEnvelope
   * copies it into the request).
   */
  finish(): Buffer {
    const o = this.out;
    const recsEnd = o.pos;
    o.key4(0x61, 0x67, 0x67, 0x73); // "aggs"
    o.head(0x80, this.aggs.length);
    for (const a of this.aggs) writeWithSeq(o, a.frame, a.mapStart, a.end, a.seq);
    // The head, now that the number of raw records is known, right before the first of them.
    const n = this.raws;
    const arrayHead = n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
    const begin = HEAD_ROOM - 6 - arrayHead;
    const end = o.pos;
    o.pos = begin;
    o.byte(0xa2);
    o.key4(0x72, 0x65, 0x63, 0x73); // "recs"
    o.head(0x80, n);
    if (o.pos !== HEAD_ROOM || recsEnd > end) throw new Error('batch body header miscounted');
    return o.buf.subarray(begin, end);
  }
}

/** Bytes kept free at the start of a batch body for its header (map, "recs", array of up to 2^32). */
const HEAD_ROOM = 16;

/** A batch body from records already read (tests, the forwarder's slow path). */
export function encodeBatchBody(records: WireRecord[], restamp?: (r: RawRecord) => RawRecord): Buffer {
  const b = new BatchBodyBuilder(restamp);
  for (const r of records) b.add(r);
  return b.finish();
}

/** One stored record map, with `seq` added to it, into `o`. */
function writeWithSeq(o: Writer, f: Buffer, m: number, end: number, seq: number): void {
  // The stored map's header: its entry count and how many bytes the header takes.
  const ai = f[m] & 0x1f;
  let n: number;
  let skip: number;
  if (ai < 24) {
    n = ai;
    skip = 1;
  } else if (ai === 24) {
    n = f[m + 1];
    skip = 2;
  } else {
    n = f.readUInt16BE(m + 1);
    skip = 3;
  }
  o.ensure(end - m + 16);
  o.head(0xa0, n + 1);
  o.key3(0x73, 0x65, 0x71); // "seq"
  o.int(seq);
  // Buffer#copy makes a short-lived view per call; with the 4 MiB semi-space (deploy/systemd unit)
  // those die young. Against a byte loop, draining 300k records into InfluxDB (gateway, cloud and
  // influxd as processes), 4 runs each: gateway CPU 883 → 772 ms on average, and 2 instead of 5-6
  // full collections. (The loop was chosen with a 2 MiB semi-space, which promoted the views.)
  o.pos += f.copy(o.buf, o.pos, m + skip, end);
}

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
  const arr =
    e.kind === 'raw'
      ? [0, e.dev, e.ts, e.vals, e.tags ?? null, e.dseq ?? null, e.fl ?? 0]
      : [1, e.dev, e.win, e.start, e.end, e.rev, e.aggs];
  const body = encoder.encode(arr);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(crc32(body), 0);
  out.set(body, 4);
  return out;
}

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

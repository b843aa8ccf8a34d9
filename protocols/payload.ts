/**
 * Payload v1 codec: what a device publishes on devices/{id}/telemetry.
 *
 *   { "ts": 1732200000123, "values": { "temperature": 21.5, "door_open": false },
 *     "seq": 42, "tags": { "room": "a1" } }
 *
 * The same shape travels as JSON or CBOR. The format is taken from the MQTT 5 content type when
 * given, else from the first byte (a CBOR map starts with major type 5, 0xa0..0xbf; JSON with `{`
 * after optional whitespace or a UTF-8 BOM). JSON must be valid UTF-8. An optional `"v": 1` names
 * the version; another major version is refused with SLUICE_UNSUPPORTED_VERSION. Every other
 * defect is SLUICE_BAD_PAYLOAD (or SLUICE_TOO_LARGE) with a message naming the offending field.
 */
import { cborDecoder, cborEncoder, cborInt } from './cbor.js';
import { SluiceError } from './errors.js';
import { cborDepthExceeds, jsonDepthExceeds } from './nesting.js';
import { decodeJsonFast } from './payload-json-fast.js';
import { RESERVED_NAMES, truncate } from './topic.js';

export const PAYLOAD_VERSION = 1;
export const METRIC_NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
export const TAG_KEY_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

export type MetricValue = number | boolean;
export type Values = Record<string, MetricValue>;
export type Tags = Record<string, string>;

export interface PayloadLimits {
  /** Largest accepted payload in bytes. */
  maxBytes: number;
  /** Most metrics in one reading. */
  maxMetrics: number;
  /** Most tags in one reading. */
  maxTags: number;
  /** Longest tag value in characters. */
  maxTagValueLength: number;
  /** Deepest nesting of maps/arrays, checked on the bytes before decoding (default 8; v1 needs 2). */
  maxDepth?: number;
}

export const DEFAULT_PAYLOAD_LIMITS: PayloadLimits = {
  maxBytes: 64 * 1024,
  maxMetrics: 100,
  maxTags: 16,
  maxTagValueLength: 128,
  maxDepth: 8,
};

/** A reading as decoded from one payload, before the gateway assigns its sequence. */
export interface DecodedPayload {
  /** Event time, ms since the epoch; undefined when the device sent none. */
  ts?: number;
  values: Values;
  /** The device's own counter, if it sends one. */
  seq?: number;
  tags?: Tags;
}

export type PayloadFormat = 'json' | 'cbor';

// Strict: invalid UTF-8 is an error, not silently replaced by U+FFFD; a leading BOM is dropped.
const utf8 = new TextDecoder('utf-8', { fatal: true });

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_PAYLOAD', message);
}

export function detectFormat(buf: Uint8Array, contentType?: string): PayloadFormat {
  if (contentType) {
    const ct = contentType.toLowerCase();
    if (ct.includes('cbor')) return 'cbor';
    if (ct.includes('json')) return 'json';
  }
  // A UTF-8 byte order mark (some Windows tools write one) can only start a JSON text.
  if (buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) return 'json';
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
    if (b === 0x7b) return 'json';
    if (b >= 0xa0 && b <= 0xbf) return 'cbor';
    // A CBOR tag (0xc0..0xdb) or anything else: let the CBOR decoder give the precise error,
    // unless it is printable ASCII, which is far more likely a broken JSON document.
    return b >= 0x20 && b < 0x7f ? 'json' : 'cbor';
  }
  throw bad('empty payload');
}

/**
 * Decode and validate a payload v1. `metric` is set for the single-metric topic form, whose
 * payload is a plain number (or true/false) as text.
 */
export function decodePayload(
  buf: Uint8Array,
  opts: { contentType?: string; metric?: string; limits?: PayloadLimits } = {},
): DecodedPayload {
  const limits = opts.limits ?? DEFAULT_PAYLOAD_LIMITS;
  if (buf.length > limits.maxBytes) {
    throw new SluiceError('SLUICE_TOO_LARGE', `payload of ${buf.length} bytes exceeds the limit of ${limits.maxBytes} bytes`);
  }
  if (opts.metric !== undefined) return decodeSingleMetric(buf, opts.metric);
  // Checked here too: with a content type, detectFormat does not look at the bytes.
  if (buf.length === 0) throw bad('empty payload');
  const format = detectFormat(buf, opts.contentType);
  const maxDepth = limits.maxDepth ?? DEFAULT_PAYLOAD_LIMITS.maxDepth!;
  // The common shape straight from the bytes (it nests two deep); anything else, including every
  // invalid payload, the general way below (protocols/payload-json-fast.ts).
  if (format === 'json' && maxDepth >= 2) {
    const fast = decodeJsonFast(buf, limits, goodName);
    if (fast !== undefined) return fast;
  }
  if (format === 'json' ? jsonDepthExceeds(buf, maxDepth) : cborDepthExceeds(buf, maxDepth)) {
    throw bad(`payload nests maps/arrays deeper than the limit of ${maxDepth}`);
  }
  let doc: unknown;
  try {
    // cbor-x caches a DataView on the buffer it decodes (a property added to it): decoded from a
    // throwaway view, so the broker's payload Buffer, retained until the reading's commit, keeps
    // its shape and does not carry a DataView along.
    doc = format === 'json' ? JSON.parse(utf8.decode(buf)) : cborDecoder.decode(new Uint8Array(buf.buffer, buf.byteOffset, buf.length));
  } catch (err) {
    throw new SluiceError('SLUICE_BAD_PAYLOAD', `payload is not valid ${format.toUpperCase()}: ${(err as Error).message}`, { cause: err });
  }
  return validatePayload(doc, limits);
}

function decodeSingleMetric(buf: Uint8Array, metric: string): DecodedPayload {
  if (!METRIC_NAME_RE.test(metric) || RESERVED_NAMES.has(metric)) throw bad(`bad metric name "${truncate(metric)}"`);
  const text = Buffer.from(buf.buffer, buf.byteOffset, buf.length).toString('utf8').trim();
  if (text === 'true' || text === 'false') return { values: { [metric]: text === 'true' } };
  // Number() accepts '' and '0x10'; insist on a decimal literal.
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
    throw bad(`single-metric payload for "${metric}" must be a number or true/false, got "${truncate(text, 40)}"`);
  }
  const n = Number(text);
  if (!Number.isFinite(n)) throw bad(`single-metric payload for "${metric}" is not a finite number`);
  return { values: { [metric]: n } };
}

const KNOWN_KEYS = new Set(['v', 'ts', 'values', 'seq', 'tags']);
const EMPTY_VALUES: Values = Object.freeze({}) as Values;

/**
 * Metric and tag names that passed METRIC_NAME_RE (= TAG_KEY_RE) and the reserved list. A fleet
 * uses a handful of names over and over; a Set lookup is cheaper than the regex per reading.
 * Bounded: cleared when full, so odd names cannot grow it.
 */
const goodNames = new Set<string>();
function goodName(name: string): boolean {
  if (goodNames.has(name)) return true;
  if (!METRIC_NAME_RE.test(name) || RESERVED_NAMES.has(name)) return false;
  if (goodNames.size >= 4096) goodNames.clear();
  goodNames.add(name);
  return true;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== 'object' || Array.isArray(x) || x instanceof Uint8Array) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

export function validatePayload(doc: unknown, limits: PayloadLimits = DEFAULT_PAYLOAD_LIMITS): DecodedPayload {
  if (!isPlainObject(doc)) throw bad('payload must be an object with a "values" map');
  // The version comes first: a later version may add fields, and must be refused as a version.
  if (doc.v !== undefined) {
    if (typeof doc.v !== 'number' || !Number.isInteger(doc.v)) throw bad('"v" must be an integer version');
    if (doc.v !== PAYLOAD_VERSION) {
      throw new SluiceError('SLUICE_UNSUPPORTED_VERSION', `payload version ${doc.v} is not supported (this gateway reads version ${PAYLOAD_VERSION})`);
    }
  }
  for (const key in doc) {
    if (Object.hasOwn(doc, key) && !KNOWN_KEYS.has(key)) throw bad(`unknown field "${truncate(key, 40)}" (allowed: v, ts, values, seq, tags)`);
  }
  const out: DecodedPayload = { values: EMPTY_VALUES };
  if (doc.ts !== undefined) {
    if (typeof doc.ts !== 'number' || !Number.isSafeInteger(doc.ts) || doc.ts < 0) {
      throw bad('"ts" must be a non-negative integer: event time in milliseconds since the epoch');
    }
    out.ts = doc.ts;
  }
  if (doc.seq !== undefined) {
    if (typeof doc.seq !== 'number' || !Number.isSafeInteger(doc.seq) || doc.seq < 0) throw bad('"seq" must be a non-negative integer');
    out.seq = doc.seq;
  }
  if (!isPlainObject(doc.values)) throw bad('"values" must be a map of metric name to number or boolean');
  const names = Object.keys(doc.values);
  if (names.length === 0) throw bad('"values" must hold at least one metric');
  if (names.length > limits.maxMetrics) throw bad(`"values" holds ${names.length} metrics, more than the limit of ${limits.maxMetrics}`);
  const values = doc.values;
  for (const name of names) {
    if (!goodName(name)) {
      throw bad(`bad metric name "${truncate(name, 40)}": must match [A-Za-z][A-Za-z0-9_.-]{0,63} and not be reserved`);
    }
    const v = values[name];
    if (typeof v !== 'boolean' && !(typeof v === 'number' && Number.isFinite(v))) throw bad(`metric "${name}" must be a finite number or a boolean`);
  }
  // Every entry checked: the decoder's own fresh object is the reading's values (no copy per reading).
  out.values = values as Values;
  if (doc.tags !== undefined) {
    if (!isPlainObject(doc.tags)) throw bad('"tags" must be a map of string to string');
    const keys = Object.keys(doc.tags);
    if (keys.length > limits.maxTags) throw bad(`"tags" holds ${keys.length} tags, more than the limit of ${limits.maxTags}`);
    const tags: Tags = {};
    for (const k of keys) {
      if (!goodName(k)) throw bad(`bad tag name "${truncate(k, 40)}"`);
      const tv = doc.tags[k];
      if (typeof tv !== 'string' || tv.length === 0) throw bad(`tag "${k}" must be a non-empty string`);
      if (tv.length > limits.maxTagValueLength) throw bad(`tag "${k}" is longer than ${limits.maxTagValueLength} characters`);
      tags[k] = tv;
    }
    if (keys.length > 0) out.tags = tags;
  }
  return out;
}

export function encodePayload(p: DecodedPayload & { v?: number }, format: PayloadFormat = 'json'): Buffer {
  const doc: Record<string, unknown> = {};
  if (p.v !== undefined) doc.v = p.v;
  if (p.ts !== undefined) doc.ts = p.ts;
  doc.values = p.values;
  if (p.seq !== undefined) doc.seq = p.seq;
  if (p.tags !== undefined) doc.tags = p.tags;
  if (format === 'json') return Buffer.from(JSON.stringify(doc));
  if (p.ts !== undefined) doc.ts = cborInt(p.ts);
  if (p.seq !== undefined) doc.seq = cborInt(p.seq);
  return Buffer.from(cborEncoder.encode(doc));
}

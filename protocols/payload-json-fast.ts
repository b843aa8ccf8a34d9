/**
 * The fast path of decodePayload for JSON: reads the common shape of a payload v1 straight from
 * the bytes, without decoding them to a string, building JSON.parse's objects and validating those
 * (about a third of what the gateway allocated per reading, all of it living until the reading's
 * commit).
 *
 * It accepts only a strict subset: ASCII, no escapes in strings, known fields each at most once,
 * `ts`/`seq`/`v` as plain non-negative integers, numbers whose exact value a double can take in
 * one rounding step (up to 15 significant digits, a power of ten up to 22), names that pass the
 * validator's checks, counts within the limits. Anything else (including every invalid payload)
 * returns undefined and goes the general way (JSON.parse + validatePayload), which gives the
 * precise error; so the answer for any input is the general path's, and the differential test in
 * test/unit/payload-json-fast.test.ts holds it to that.
 */
import { AsciiCache } from './ascii-cache.js';
import type { DecodedPayload, PayloadLimits, Tags, Values } from './payload.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;

/** 10^0 .. 10^22: exactly representable as doubles. */
const POW10 = Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));

/** Reader state (module-level: decoding is synchronous and not reentrant). */
let src: Uint8Array = new Uint8Array(0);
let pos = 0;
let end = 0;

function skipWs(): void {
  while (pos < end) {
    const b = src[pos];
    if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) return;
    pos++;
  }
}

/** A string without escapes or non-ASCII bytes, after its opening quote; undefined otherwise. */
function readString(): string | undefined {
  const start = pos;
  while (pos < end) {
    const b = src[pos];
    if (b === QUOTE) {
      pos++;
      // (Bytes are ASCII, checked above, so the cache always answers.)
      return texts.text(src, start, pos - 1)!;
    }
    if (b === BACKSLASH || b < 0x20 || b >= 0x80) return undefined;
    pos++;
  }
  return undefined;
}

/** Names and short strings: a fleet sends the same few keys over and over. */
const texts = new AsciiCache(512, 32);

/**
 * A JSON number, when its value is exact after one rounding (Clinger's fast path); NaN otherwise
 * (the caller then gives up). Follows JSON's grammar strictly: no leading zeros, no bare dot.
 */
function readNumber(): number {
  let neg = false;
  if (src[pos] === MINUS) {
    neg = true;
    pos++;
  }
  let mant = 0;
  let digits = 0;
  let exp10 = 0;
  const intStart = pos;
  while (pos < end && src[pos] >= ZERO && src[pos] <= 0x39) {
    if (digits > 0 || src[pos] !== ZERO) digits++;
    mant = mant * 10 + (src[pos] - ZERO);
    pos++;
  }
  const intLen = pos - intStart;
  if (intLen === 0 || (intLen > 1 && src[intStart] === ZERO)) return NaN;
  if (pos < end && src[pos] === DOT) {
    pos++;
    const fracStart = pos;
    while (pos < end && src[pos] >= ZERO && src[pos] <= 0x39) {
      if (digits > 0 || src[pos] !== ZERO) digits++;
      mant = mant * 10 + (src[pos] - ZERO);
      exp10--;
      pos++;
    }
    if (pos === fracStart) return NaN;
  }
  if (pos < end && (src[pos] === 0x65 || src[pos] === 0x45)) {
    pos++;
    let eneg = false;
    if (src[pos] === MINUS || src[pos] === 0x2b) {
      eneg = src[pos] === MINUS;
      pos++;
    }
    const eStart = pos;
    let e = 0;
    while (pos < end && src[pos] >= ZERO && src[pos] <= 0x39 && pos - eStart < 4) {
      e = e * 10 + (src[pos] - ZERO);
      pos++;
    }
    if (pos === eStart || (pos < end && src[pos] >= ZERO && src[pos] <= 0x39)) return NaN;
    exp10 += eneg ? -e : e;
  }
  // 15 significant digits are always below 2^53; the integer part is exact.
  if (digits > 15) return NaN;
  let v: number;
  if (exp10 === 0) v = mant;
  else if (exp10 > 0 && exp10 <= 22) v = mant * POW10[exp10];
  else if (exp10 < 0 && exp10 >= -22) v = mant / POW10[-exp10];
  else return NaN;
  return neg ? -v : v;
}

/** A non-negative integer literal (ts, seq, v) that is a safe integer; -1 otherwise. */
function readUint(): number {
  const start = pos;
  let n = 0;
  while (pos < end && src[pos] >= ZERO && src[pos] <= 0x39) {
    n = n * 10 + (src[pos] - ZERO);
    pos++;
  }
  const len = pos - start;
  if (len === 0 || len > 16 || (len > 1 && src[start] === ZERO)) return -1;
  // A fraction or exponent: leave it to the general path.
  if (pos < end && (src[pos] === DOT || src[pos] === 0x65 || src[pos] === 0x45)) return -1;
  return Number.isSafeInteger(n) ? n : -1;
}

/** After a member's value: true when the object continues (a comma), false at its end; undefined on anything else. */
function next(): boolean | undefined {
  skipWs();
  const b = src[pos++];
  if (b === COMMA) {
    skipWs();
    return src[pos++] === QUOTE ? true : undefined;
  }
  return b === RBRACE ? false : undefined;
}

/**
 * Decode a JSON payload v1 of the common shape, or undefined to let the general path decide.
 * `goodName` is the validator's name check (protocols/payload.ts), passed in to keep one copy.
 */
export function decodeJsonFast(buf: Uint8Array, limits: PayloadLimits, goodName: (name: string) => boolean): DecodedPayload | undefined {
  src = buf;
  pos = 0;
  end = buf.length;
  try {
    return readDoc(limits, goodName);
  } finally {
    src = EMPTY;
  }
}

const EMPTY = new Uint8Array(0);

function readDoc(limits: PayloadLimits, goodName: (name: string) => boolean): DecodedPayload | undefined {
  skipWs();
  if (src[pos++] !== LBRACE) return undefined;
  skipWs();
  if (src[pos++] !== QUOTE) return undefined;
  let ts = -1;
  let seq = -1;
  let values: Values | undefined;
  let tags: Tags | undefined;
  let sawV = false;
  let sawTags = false;
  for (;;) {
    const key = readString();
    if (key === undefined) return undefined;
    skipWs();
    if (src[pos++] !== COLON) return undefined;
    skipWs();
    if (key === 'values') {
      if (values !== undefined) return undefined;
      values = readValues(limits, goodName);
      if (values === undefined) return undefined;
    } else if (key === 'ts') {
      if (ts >= 0) return undefined;
      ts = readUint();
      if (ts < 0) return undefined;
    } else if (key === 'seq') {
      if (seq >= 0) return undefined;
      seq = readUint();
      if (seq < 0) return undefined;
    } else if (key === 'tags') {
      if (sawTags) return undefined;
      sawTags = true;
      const t = readTags(limits, goodName);
      if (t === null) return undefined;
      tags = t;
    } else if (key === 'v') {
      if (sawV || readUint() !== 1) return undefined;
      sawV = true;
    } else {
      return undefined;
    }
    const more = next();
    if (more === undefined) return undefined;
    if (!more) break;
  }
  skipWs();
  if (pos !== end || values === undefined) return undefined;
  // The same shape, in the same order, as validatePayload's result.
  const out: DecodedPayload = { values };
  if (ts >= 0) out.ts = ts;
  if (seq >= 0) out.seq = seq;
  if (tags !== undefined) out.tags = tags;
  return out;
}

function readValues(limits: PayloadLimits, goodName: (name: string) => boolean): Values | undefined {
  if (src[pos++] !== LBRACE) return undefined;
  skipWs();
  if (src[pos++] !== QUOTE) return undefined;
  const values: Values = {};
  let n = 0;
  for (;;) {
    const name = readString();
    // goodName also keeps out "__proto__" and the like (a name must start with a letter).
    if (name === undefined || !goodName(name) || Object.hasOwn(values, name)) return undefined;
    skipWs();
    if (src[pos++] !== COLON) return undefined;
    skipWs();
    const b = src[pos];
    if (b === 0x74 /* t */) {
      if (src[pos + 1] !== 0x72 || src[pos + 2] !== 0x75 || src[pos + 3] !== 0x65) return undefined;
      pos += 4;
      values[name] = true;
    } else if (b === 0x66 /* f */) {
      if (src[pos + 1] !== 0x61 || src[pos + 2] !== 0x6c || src[pos + 3] !== 0x73 || src[pos + 4] !== 0x65) return undefined;
      pos += 5;
      values[name] = false;
    } else {
      const v = readNumber();
      if (Number.isNaN(v)) return undefined;
      values[name] = v;
    }
    if (++n > limits.maxMetrics) return undefined;
    const more = next();
    if (more === undefined) return undefined;
    if (!more) return values;
  }
}

/** The tags map: undefined when empty (as validatePayload leaves it), null to give up. */
function readTags(limits: PayloadLimits, goodName: (name: string) => boolean): Tags | undefined | null {
  if (src[pos++] !== LBRACE) return null;
  skipWs();
  if (src[pos] === RBRACE) {
    pos++;
    return undefined;
  }
  if (src[pos++] !== QUOTE) return null;
  const tags: Tags = {};
  let n = 0;
  for (;;) {
    const k = readString();
    if (k === undefined || !goodName(k) || Object.hasOwn(tags, k)) return null;
    skipWs();
    if (src[pos++] !== COLON) return null;
    skipWs();
    if (src[pos++] !== QUOTE) return null;
    const v = readString();
    if (v === undefined || v.length === 0 || v.length > limits.maxTagValueLength) return null;
    tags[k] = v;
    if (++n > limits.maxTags) return null;
    const more = next();
    if (more === undefined) return null;
    if (!more) return tags;
  }
}

/**
 * The JSON fast path of decodePayload (protocols/payload-json-fast.ts) against the general path it
 * short-cuts (strict UTF-8 decode, depth check, JSON.parse, validatePayload): on every generated
 * input where the fast path answers, the general path must accept the same input and give the same
 * reading — same fields, same key order, the same doubles bit for bit (-0 included). Where the
 * fast path declines, decodePayload's answer is the general path's by construction.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonDepthExceeds } from '../../protocols/nesting.js';
import { decodeJsonFast } from '../../protocols/payload-json-fast.js';
import { decodePayload, DEFAULT_PAYLOAD_LIMITS, METRIC_NAME_RE, validatePayload, type DecodedPayload, type PayloadLimits } from '../../protocols/payload.js';
import { RESERVED_NAMES } from '../../protocols/topic.js';

const goodName = (n: string) => METRIC_NAME_RE.test(n) && !RESERVED_NAMES.has(n);
const utf8 = new TextDecoder('utf-8', { fatal: true });

function general(buf: Uint8Array, limits: PayloadLimits): DecodedPayload {
  if (jsonDepthExceeds(buf, limits.maxDepth ?? 8)) throw new Error('too deep');
  return validatePayload(JSON.parse(utf8.decode(buf)), limits);
}

/** Same reading: fields, key order, and every number's exact bits. */
function same(a: DecodedPayload, b: DecodedPayload): boolean {
  if (JSON.stringify(a) !== JSON.stringify(b)) return false;
  if (JSON.stringify(Object.keys(a)) !== JSON.stringify(Object.keys(b))) return false;
  for (const k of Object.keys(a.values)) if (!Object.is(a.values[k], b.values[k])) return false;
  return Object.is(a.ts, b.ts) && Object.is(a.seq, b.seq);
}

let fastAnswers = 0;
function check(text: string | Uint8Array, limits: PayloadLimits = DEFAULT_PAYLOAD_LIMITS): void {
  const buf = typeof text === 'string' ? Buffer.from(text) : text;
  const fast = decodeJsonFast(buf, limits, goodName);
  if (fast === undefined) return;
  fastAnswers++;
  let ref: DecodedPayload;
  try {
    ref = general(buf, limits);
  } catch (err) {
    throw new Error(`fast path accepted what the general path refuses (${(err as Error).message}): ${Buffer.from(buf).toString('latin1')}`);
  }
  if (!same(fast, ref)) throw new Error(`fast ${JSON.stringify(fast)} ≠ general ${JSON.stringify(ref)} for ${Buffer.from(buf).toString('latin1')}`);
}

// JSON number texts in every form the grammar allows, and some it does not.
const digits = (min: number, max: number) => fc.stringMatching(new RegExp(`^[0-9]{${min},${max}}$`));
const numberText = fc.oneof(
  fc.tuple(fc.constantFrom('', '-', '+'), fc.oneof(fc.constant('0'), fc.stringMatching(/^[1-9][0-9]{0,18}$/), digits(1, 3)), fc.option(digits(0, 20)), fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), digits(0, 4)))).map(
    ([s, i, f, e]) => `${s}${i}${f === null ? '' : `.${f}`}${e === null ? '' : e.join('')}`,
  ),
  fc.double().map((d) => JSON.stringify(d)),
  fc.integer().map(String),
  fc.constantFrom('-0', '0.1', '1e22', '1e23', '9007199254740993', '123456789012345', '1234567890123456', '0.30000000000000004', '1.7976931348623157e308', '5e-324', '.5', '01', '1.', '-', 'NaN', 'Infinity'),
);
const name = fc.oneof(fc.constantFrom('temperature', 'humidity', 'door_open', 'a', 'x.y-z_1', 'constructor', 'toString', '__proto__', 'time', 'ts', 'device', 'v'), fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.-]{0,70}$/), fc.string({ maxLength: 8 }));
const value = fc.oneof(numberText, fc.constantFrom('true', 'false', 'null', '"x"', '[]', '{}', 'tru', 'falsey'));
const ws = fc.constantFrom('', '', '', ' ', '\n', '\t ', '\r\n');
const keyText = (k: string) => fc.constantFrom(JSON.stringify(k), `"${k}"`);
const member = (k: fc.Arbitrary<string>, v: fc.Arbitrary<string>) => fc.tuple(k.chain(keyText), v, ws, ws).map(([key, val, a, b]) => `${a}${key}${b}:${a}${val}${b}`);
const object = (k: fc.Arbitrary<string>, v: fc.Arbitrary<string>, max: number) => fc.array(member(k, v), { maxLength: max }).map((ms) => `{${ms.join(',')}}`);
const tagValue = fc.oneof(fc.string({ maxLength: 10 }).map((s) => JSON.stringify(s)), fc.constantFrom('""', '"' + 'x'.repeat(128) + '"', '"' + 'x'.repeat(129) + '"', '1', '"a\\"b"', '"é"'));
const top = fc.oneof(
  fc.tuple(fc.constant('values'), object(name, value, 6)),
  fc.tuple(fc.constantFrom('ts', 'seq', 'v'), fc.oneof(numberText, fc.constantFrom('1', '0', '1732200000123', '-1', '1.0', '"1"'))),
  fc.tuple(fc.constant('tags'), fc.oneof(object(name, tagValue, 4), fc.constantFrom('null', '[]', '{}', '{ }'))),
  fc.tuple(fc.constantFrom('extra', 'Values', 'valu\\u0065s'), fc.constant('1')),
);
const doc = fc.tuple(fc.array(top, { maxLength: 5 }), ws, ws).map(([ms, a, b]) => `${a}{${ms.map(([k, v]) => `"${k}":${v}`).join(',')}}${b}`);
/** Mostly valid documents: each part is right most of the time, so many take the fast path. */
const mostly = <T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<T>) => fc.oneof({ arbitrary: good, weight: 12 }, { arbitrary: bad, weight: 1 });
const goodNameArb = fc.oneof(fc.constantFrom('temperature', 'humidity', 'door_open', 'a', 'x.y-z_1', 'constructor', 'toString'), fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.-]{0,20}$/));
const nearValid = fc
  .record({
    values: object(mostly(goodNameArb, name), mostly(fc.oneof(numberText, fc.constantFrom('true', 'false')), value), 6),
    ts: fc.option(mostly(fc.nat({ max: 2 ** 45 }).map(String), numberText)),
    seq: fc.option(mostly(fc.nat().map(String), numberText)),
    v: fc.option(mostly(fc.constant('1'), fc.constantFrom('2', '1.0', '"1"'))),
    tags: fc.option(object(mostly(goodNameArb, name), mostly(fc.stringMatching(/^[a-z0-9 ]{1,12}$/).map((x) => `"${x}"`), tagValue), 3)),
    order: fc.nat(),
  })
  .chain((r) => {
    const members: string[] = [`"values":${r.values}`];
    if (r.ts !== null) members.push(`"ts":${r.ts}`);
    if (r.seq !== null) members.push(`"seq":${r.seq}`);
    if (r.v !== null) members.push(`"v":${r.v}`);
    if (r.tags !== null) members.push(`"tags":${r.tags}`);
    return fc.shuffledSubarray(members, { minLength: members.length, maxLength: members.length }).chain((ms) => fc.tuple(ws, ws).map(([a, b]) => `${a}{${ms.join(`,${a}`)}}${b}`));
  });
/** A payload of the common shape, as devices send it. */
const typical = fc
  .record({ ts: fc.nat({ max: 2 ** 45 }), seq: fc.nat(), t: fc.double({ min: -100, max: 100, noNaN: true }), h: fc.integer({ min: 0, max: 100 }), d: fc.boolean(), room: fc.stringMatching(/^[a-z0-9]{1,8}$/) })
  .map((r) => JSON.stringify({ ts: r.ts, values: { temperature: Math.round(r.t * 100) / 100, humidity: r.h, door_open: r.d }, seq: r.seq, tags: { room: r.room } }));

describe('JSON payload fast path', () => {
  it('takes the common shape (as sluice sim and typical devices send it) and agrees with the general path', () => {
    fastAnswers = 0;
    fc.assert(fc.property(typical, (t) => check(t)), { numRuns: 2000 });
    expect(fastAnswers).toBe(2000);
  });

  it('never disagrees with the general path on generated documents, numbers in every form, odd names and whitespace', () => {
    fastAnswers = 0;
    fc.assert(fc.property(fc.oneof(doc, nearValid), (d) => check(d)), { numRuns: 10_000 });
    // Enough of them took the fast path for the comparison to mean something.
    expect(fastAnswers).toBeGreaterThan(500);
  });

  it('never disagrees on byte-level mutations of valid payloads', () => {
    const mutated = fc.tuple(typical, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { minLength: 1, maxLength: 3 })).map(([t, muts]) => {
      const b = [...Buffer.from(t)];
      for (const [at, byte, op] of muts) {
        const i = at % (b.length + 1);
        if (op === 'set' && i < b.length) b[i] = byte;
        else if (op === 'insert') b.splice(i, 0, byte);
        else b.splice(i, 1);
      }
      return Uint8Array.from(b);
    });
    fc.assert(fc.property(mutated, (m) => check(m)), { numRuns: 10_000 });
  });

  it('respects the limits it is given', () => {
    const tight: PayloadLimits = { ...DEFAULT_PAYLOAD_LIMITS, maxMetrics: 2, maxTags: 1, maxTagValueLength: 3 };
    expect(decodeJsonFast(Buffer.from('{"values":{"a":1,"b":2,"c":3}}'), tight, goodName)).toBeUndefined();
    expect(decodeJsonFast(Buffer.from('{"values":{"a":1},"tags":{"x":"abcd"}}'), tight, goodName)).toBeUndefined();
    expect(decodeJsonFast(Buffer.from('{"values":{"a":1},"tags":{"x":"a","y":"b"}}'), tight, goodName)).toBeUndefined();
    expect(decodeJsonFast(Buffer.from('{"values":{"a":1,"b":true},"tags":{"x":"abc"}}'), tight, goodName)).toEqual({ values: { a: 1, b: true }, tags: { x: 'abc' } });
    // decodePayload gives the general path's errors for what the fast path leaves to it.
    expect(() => decodePayload(Buffer.from('{"values":{"a":1,"b":2,"c":3}}'), { limits: tight })).toThrow(/3 metrics, more than the limit of 2/);
    expect(() => decodePayload(Buffer.from('{"values":{"a":1}}'), { limits: { ...DEFAULT_PAYLOAD_LIMITS, maxDepth: 1 } })).toThrow(/deeper than the limit of 1/);
  });
});

/**
 * Fuzzing the payload decoder: well over 10,000 generated payloads (JSON and CBOR documents of
 * payload shape with hostile values, arbitrary JSON, CBOR of arbitrary values, random bytes,
 * mutations of valid payloads) plus a corpus of nasty cases. Every input is either accepted as a
 * well-formed reading or refused with a stable code; the same input always gets the same answer;
 * nothing throws anything else, hangs, or pollutes prototypes; valid payloads decode afterwards.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../protocols/errors.js';
import { decodePayload, DEFAULT_PAYLOAD_LIMITS, METRIC_NAME_RE, TAG_KEY_RE, type DecodedPayload } from '../../protocols/payload.js';
import { RESERVED_NAMES } from '../../protocols/topic.js';
import { PAYLOAD_CORPUS, payloadBytes } from '../support/security-fuzz.js';

const REFUSAL_CODES = new Set(['SLUICE_BAD_PAYLOAD', 'SLUICE_TOO_LARGE', 'SLUICE_UNSUPPORTED_VERSION']);

type Outcome = { ok: true; value: DecodedPayload } | { ok: false; code: string };

function outcome(buf: Buffer, metric?: string): Outcome {
  try {
    return { ok: true, value: decodePayload(buf, metric === undefined ? {} : { metric }) };
  } catch (err) {
    if (!isSluiceError(err)) throw new Error(`decoder threw a non-Sluice error: ${(err as Error)?.stack ?? String(err)}`);
    return { ok: false, code: err.code };
  }
}

function assert(cond: boolean, what: string): void {
  if (!cond) throw new Error(what);
}

/** What an accepted reading must look like, whatever the input was. (Plain checks: expect() is slow at 10k runs.) */
function checkReading(p: DecodedPayload): void {
  const names = Object.keys(p.values);
  assert(names.length > 0 && names.length <= DEFAULT_PAYLOAD_LIMITS.maxMetrics, 'metric count');
  for (const n of names) {
    assert(METRIC_NAME_RE.test(n) && !RESERVED_NAMES.has(n), `metric name ${n}`);
    const v = p.values[n];
    assert(typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)), `value of ${n}`);
  }
  if (p.ts !== undefined) assert(Number.isSafeInteger(p.ts) && p.ts >= 0, 'ts');
  if (p.seq !== undefined) assert(Number.isSafeInteger(p.seq) && p.seq >= 0, 'seq');
  if (p.tags !== undefined) {
    assert(Object.keys(p.tags).length <= DEFAULT_PAYLOAD_LIMITS.maxTags, 'tag count');
    for (const [k, v] of Object.entries(p.tags)) {
      assert(TAG_KEY_RE.test(k) && !RESERVED_NAMES.has(k), `tag name ${k}`);
      assert(typeof v === 'string' && v.length > 0 && v.length <= DEFAULT_PAYLOAD_LIMITS.maxTagValueLength, `tag ${k}`);
    }
  }
}

function checkConsistent(buf: Buffer, metric?: string): Outcome {
  const first = outcome(buf, metric);
  const again = outcome(Buffer.from(buf), metric);
  assert(JSON.stringify(again) === JSON.stringify(first), `inconsistent: ${JSON.stringify(first)} then ${JSON.stringify(again)}`);
  if (first.ok) checkReading(first.value);
  else assert(REFUSAL_CODES.has(first.code), `unexpected code ${first.code}`);
  return first;
}

describe('payload decoder fuzz', () => {
  it('12,000 generated payloads: accepted well-formed or refused with a stable code, consistently', () => {
    const seen = { ok: 0, refused: 0 };
    fc.assert(
      fc.property(payloadBytes, (buf) => {
        const o = checkConsistent(buf);
        seen[o.ok ? 'ok' : 'refused']++;
      }),
      { numRuns: 12_000, seed: Number(process.env.SLUICE_FUZZ_SEED ?? 0x5eed) },
    );
    // The generators reach both sides of the decoder.
    expect(seen.ok).toBeGreaterThan(50);
    expect(seen.refused).toBeGreaterThan(5000);
  });

  it('the single-metric form takes only decimal numbers and true/false', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 40 }), fc.double().map(String), fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u).toString('latin1'))), (text) => {
        const o = checkConsistent(Buffer.from(text, 'latin1'), 'temperature');
        if (o.ok) expect(Object.keys(o.value.values)).toEqual(['temperature']);
      }),
      { numRuns: 2000, seed: 7 },
    );
  });

  it.each(PAYLOAD_CORPUS)('corpus: %s', (_name, buf) => {
    const t0 = performance.now();
    checkConsistent(buf);
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it('leaves no trace: no prototype pollution, and valid payloads still decode', () => {
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    expect(decodePayload(Buffer.from('{"ts":1,"values":{"temperature":21.5}}'))).toEqual({ ts: 1, values: { temperature: 21.5 } });
    expect(decodePayload(Buffer.from([0xa1, 0x66, ...Buffer.from('values'), 0xa1, 0x61, 0x61, 0x01]))).toEqual({ values: { a: 1 } });
  });
});

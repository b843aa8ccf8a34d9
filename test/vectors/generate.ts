/**
 * One-off generator of the golden vectors for payload v1 and batch v1.
 *
 * Released vectors never change. This script therefore never overwrites a file: it writes the files
 * that are missing and checks that existing files hold exactly what it would write; any difference
 * is an error (exit 1), because it means an encoder changed its bytes. Tests read the committed
 * files and never run this script.
 *
 *   npx tsx test/vectors/generate.ts           write missing vectors, verify the rest
 *
 * Layout, per format directory (payload-v1/, batch-v1/):
 *   manifest.json        the list of cases (see VectorCase in test/unit/protocols-vectors.test.ts)
 *   <name>.json|.txt     payload bytes as a file (JSON text, single-metric text)
 *   <name>.cbor          payload CBOR bytes, binary
 *   <name>.cbor.hex      CBOR bytes as hex (batches, hand-written foreign encodings, rejects)
 *   <name>.expected.json the decoded value; a reject case names the error code instead
 *
 * The expected values come from the case definitions below, not from the decoder, so a decoder
 * bug cannot write itself into the vectors. Each value is still decoded once as a sanity check.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { decodeBatch, encodeBatch, type Batch } from '../../protocols/batch.js';
import { decodePayload, encodePayload, type DecodedPayload } from '../../protocols/payload.js';

const here = dirname(fileURLToPath(import.meta.url));
let problems = 0;

interface ManifestEntry {
  name: string;
  file: string;
  format?: 'json' | 'cbor';
  /** Single-metric topic form: the metric from the topic. */
  metric?: string;
  /** True when the protocols/ encoder must reproduce the bytes exactly from `expected`. */
  canonical?: boolean;
  /** Extra fields passed to the encoder for the canonical check (e.g. { v: 1 }). */
  encodeExtra?: Record<string, unknown>;
  expected?: string;
  error?: string;
  note: string;
}

function put(dir: string, file: string, data: Buffer | string): void {
  const path = join(here, dir, file);
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  if (existsSync(path)) {
    if (!readFileSync(path).equals(bytes)) {
      console.error(`DIFFERS: ${dir}/${file} (released vectors never change; did an encoder change?)`);
      problems++;
    }
    return;
  }
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
  console.log(`wrote ${dir}/${file}`);
}

const hex = (b: Uint8Array): string => `${Buffer.from(b).toString('hex')}\n`;
const json = (x: unknown): string => `${JSON.stringify(x, null, 2)}\n`;

// ---- payload v1 ----------------------------------------------------------------------------

const TS = 1732200000123;
const full: DecodedPayload = { ts: TS, values: { temperature: 21.5, humidity: 45.2, door_open: false }, seq: 42, tags: { room: 'a1' } };
const minimal: DecodedPayload = { values: { t: 1 } };
const numbers: DecodedPayload = {
  ts: 0,
  values: { neg: -7, zero: 0, tenth: 0.1, tiny: 1e-7, big: 5_000_000_000, huge: 1.5e300, on: true, 'flow.rate_l-s': -3.25 },
  seq: 0,
};

const payloadEntries: ManifestEntry[] = [];

function payloadCase(name: string, p: DecodedPayload, format: 'json' | 'cbor', note: string, extra?: Record<string, unknown>): void {
  const file = format === 'json' ? `${name}.json` : `${name}.cbor`;
  const bytes = encodePayload({ ...p, ...extra } as DecodedPayload, format);
  sanityPayload(name, bytes, p);
  put('payload-v1', file, bytes);
  put('payload-v1', `${name}.expected.json`, json(p));
  payloadEntries.push({ name, file, format, canonical: true, ...(extra ? { encodeExtra: extra } : {}), expected: `${name}.expected.json`, note });
}

function payloadForeign(name: string, file: string, bytes: Buffer, p: DecodedPayload, note: string, metric?: string): void {
  sanityPayload(name, bytes, p, metric);
  put('payload-v1', file, file.endsWith('.hex') ? hex(bytes) : bytes);
  put('payload-v1', `${name}.expected.json`, json(p));
  payloadEntries.push({ name, file, ...(metric ? { metric } : {}), canonical: false, expected: `${name}.expected.json`, note });
}

function payloadReject(name: string, file: string, bytes: Buffer, error: string, note: string): void {
  try {
    decodePayload(bytes);
    console.error(`SANITY: ${name} decoded but should fail with ${error}`);
    problems++;
  } catch (err) {
    if ((err as { code?: string }).code !== error) {
      console.error(`SANITY: ${name} failed with ${(err as { code?: string }).code}, want ${error}`);
      problems++;
    }
  }
  put('payload-v1', file, file.endsWith('.hex') ? hex(bytes) : bytes);
  payloadEntries.push({ name, file, error, note });
}

function sanityPayload(name: string, bytes: Buffer, want: DecodedPayload, metric?: string): void {
  const got = decodePayload(bytes, metric ? { metric } : {});
  if (!isDeepStrictEqual(got, want)) {
    console.error(`SANITY: ${name} decodes to ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    problems++;
  }
}

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const cborText = (s: string): string => (s.length < 24 ? (0x60 + s.length).toString(16) : `78${s.length.toString(16).padStart(2, '0')}`) + Buffer.from(s).toString('hex');

payloadCase('json-full', full, 'json', 'every field, as the JSON encoder writes it');
payloadCase('cbor-full', full, 'cbor', 'every field, as the CBOR encoder writes it (ts as uint64)');
payloadCase('json-minimal', minimal, 'json', 'only "values"');
payloadCase('cbor-minimal', minimal, 'cbor', 'only "values"');
payloadCase('json-numbers', numbers, 'json', 'zero ts and seq, negative, fractional, large and boolean values, a dotted metric name');
payloadCase('cbor-numbers', numbers, 'cbor', 'zero ts and seq, negative, fractional, large and boolean values, a dotted metric name');
payloadCase('json-version', { ts: TS, values: { t: 20 } }, 'json', 'explicit "v": 1 (dropped by the decoder)', { v: 1 });
payloadCase('cbor-version', { ts: TS, values: { t: 20 } }, 'cbor', 'explicit "v": 1 (dropped by the decoder)', { v: 1 });

payloadForeign(
  'json-pretty',
  'json-pretty.json',
  Buffer.from('\ufeff{\r\n  "tags": { "room": "Küche" },\r\n  "values": { "t": 2.5E1, "ok": true },\r\n  "ts": 1732200000123\r\n}\r\n'),
  { ts: TS, values: { t: 25, ok: true }, tags: { room: 'Küche' } },
  'a hand-written document: BOM, CRLF, other key order, exponent, non-ASCII tag value',
);
payloadForeign('single-number', 'single-number.txt', Buffer.from('21.5\n'), { values: { temperature: 21.5 } }, 'devices/{id}/telemetry/temperature with a plain number', 'temperature');
payloadForeign('single-negative-exp', 'single-negative-exp.txt', Buffer.from(' -1.5e-3 '), { values: { pressure: -0.0015 } }, 'single-metric: signed exponent, surrounding spaces', 'pressure');
payloadForeign('single-boolean', 'single-boolean.txt', Buffer.from('true'), { values: { door_open: true } }, 'single-metric: a boolean', 'door_open');
// What a C or Python CBOR library writes: uint64 ts, half floats, indefinite-length maps.
payloadForeign(
  'cbor-foreign',
  'cbor-foreign.cbor.hex',
  h(`bf ${cborText('ts')} 1b 000001934f2a6a7b ${cborText('values')} bf ${cborText('t')} f9 4d60 ${cborText('z')} f5 ff ${cborText('seq')} 18 2a ff`),
  { ts: TS, values: { t: 21.5, z: true }, seq: 42 },
  'indefinite-length maps, uint64 ts, float16 value, as other CBOR libraries write them',
);
payloadForeign(
  'cbor-float32-selfdescribed',
  'cbor-float32-selfdescribed.cbor.hex',
  h(`d9d9f7 a1 ${cborText('values')} a1 ${cborText('t')} fa 41ac0000`),
  { values: { t: 21.5 } },
  'self-described CBOR (tag 55799) with a float32 value',
);

payloadReject('reject-json-v2', 'reject-json-v2.json', Buffer.from('{"v":2,"ts":1732200000123,"values":{"t":1},"unit":"C"}'), 'SLUICE_UNSUPPORTED_VERSION', 'a future major version, with a field v1 does not know');
payloadReject('reject-cbor-v2', 'reject-cbor-v2.cbor.hex', encodePayload({ v: 2, values: { t: 1 } }, 'cbor'), 'SLUICE_UNSUPPORTED_VERSION', 'a future major version');
payloadReject('reject-string-value', 'reject-string-value.json', Buffer.from('{"values":{"t":"21.5"}}'), 'SLUICE_BAD_PAYLOAD', 'a metric value as a string');
payloadReject('reject-truncated-cbor', 'reject-truncated-cbor.cbor.hex', encodePayload(full, 'cbor').subarray(0, 20), 'SLUICE_BAD_PAYLOAD', 'CBOR cut short');
payloadReject('reject-ts-beyond-2-53', 'reject-ts-beyond-2-53.cbor.hex', h(`a2 ${cborText('ts')} 1b 0020000000000001 ${cborText('values')} a1 ${cborText('t')} 01`), 'SLUICE_BAD_PAYLOAD', 'uint64 ts above 2^53');

put('payload-v1', 'manifest.json', json(payloadEntries));

// ---- batch v1 ------------------------------------------------------------------------------

const batchEntries: ManifestEntry[] = [];

function batchCase(name: string, b: Batch, note: string): void {
  const bytes = encodeBatch(b);
  const got = decodeBatch(bytes);
  if (!isDeepStrictEqual(got, b)) {
    console.error(`SANITY: ${name} decodes to ${JSON.stringify(got)}`);
    problems++;
  }
  put('batch-v1', `${name}.cbor.hex`, hex(bytes));
  put('batch-v1', `${name}.expected.json`, json(b));
  batchEntries.push({ name, file: `${name}.cbor.hex`, canonical: true, expected: `${name}.expected.json`, note });
}

function batchReject(name: string, bytes: Buffer, error: string, note: string): void {
  try {
    decodeBatch(bytes);
    console.error(`SANITY: ${name} decoded but should fail with ${error}`);
    problems++;
  } catch (err) {
    if ((err as { code?: string }).code !== error) {
      console.error(`SANITY: ${name} failed with ${(err as { code?: string }).code}, want ${error}`);
      problems++;
    }
  }
  put('batch-v1', `${name}.cbor.hex`, hex(bytes));
  batchEntries.push({ name, file: `${name}.cbor.hex`, error, note });
}

const GW = 'gw-site1';
const INC = '01JDX3K8ZQ4V6T0M9R2B7C5N1E';
const minimalBatch: Batch = { v: 1, gw: GW, inc: INC, first: 1, last: 1, recs: [{ seq: 1, dev: 'd1', ts: TS, vals: { temperature: 21.5 } }], aggs: [] };
const fullBatch: Batch = {
  v: 1,
  gw: GW,
  inc: INC,
  first: 100,
  last: 110,
  recs: [
    { seq: 100, dev: 'sim-0001', ts: TS, vals: { temperature: 21.5, humidity: 45.2, door_open: false }, dseq: 7 },
    { seq: 101, dev: 'sim-0002', ts: TS + 1, vals: { temperature: -3.75 }, tags: { room: 'a1', floor: '2' }, dseq: 1 },
    { seq: 103, dev: 'sensor.7', ts: TS + 5, vals: { power_w: 1200 }, fl: 1 },
    { seq: 104, dev: 'sensor.7', ts: 4102444800000, vals: { power_w: 1199.5 }, fl: 4 },
  ],
  aggs: [
    {
      seq: 106,
      dev: 'sim-0001',
      win: '1m',
      start: 1732199940000,
      end: 1732200000000,
      rev: 0,
      aggs: {
        temperature: { count: 30, min: 20.5, max: 22.25, mean: 21.375, sum: 641.25, last: 21.5 },
        door_open: { count: 30, mean: 0.1, last: false },
      },
    },
    { seq: 110, dev: 'sim-0001', win: '5m_1m', start: 1732199700000, end: 1732200000000, rev: 2, aggs: { temperature: { count: 1, mean: 21 } } },
  ],
};
const aggsOnly: Batch = { v: 1, gw: GW, inc: INC, first: 7, last: 7, recs: [], aggs: [{ seq: 7, dev: 'd1', win: '1h', start: 1732197600000, end: 1732201200000, rev: 1, aggs: { t: { count: 3600, min: 0, max: 1, mean: 0.5, sum: 1800, last: 1 } } }] };
const emptyRange: Batch = { v: 1, gw: GW, inc: INC, first: 200, last: 250, recs: [], aggs: [] };

batchCase('minimal', minimalBatch, 'one raw record');
batchCase('full', fullBatch, 'records with tags, dseq and flags, gaps inside [first, last], two aggregate windows');
batchCase('aggs-only', aggsOnly, 'aggregates without raw records');
batchCase('empty-range', emptyRange, 'a range whose records were all dropped at the gateway');

const flipped = encodeBatch(minimalBatch);
flipped[flipped.length - 12] ^= 0x01; // inside the body, before the crc field
batchReject('reject-bad-crc', flipped, 'SLUICE_BAD_CHECKSUM', 'one bit flipped in the body');
batchReject('reject-v2', encodeBatch({ ...minimalBatch, v: 2 }), 'SLUICE_UNSUPPORTED_VERSION', 'a future major version');

put('batch-v1', 'manifest.json', json(batchEntries));

if (problems > 0) {
  console.error(`${problems} problem(s)`);
  process.exit(1);
}
console.log('vectors ok');

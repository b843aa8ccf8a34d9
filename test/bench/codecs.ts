/**
 * Micro-benchmark of the wire codecs: payload v1 as JSON vs CBOR (encode, decode+validate, bytes)
 * and batch v1 (encode, decode+validate, bytes per record). In-process, best of 5 rounds.
 */
import { decodeBatch, encodeBatch, type RawRecord } from '../../protocols/batch.js';
import { decodePayload, encodePayload } from '../../protocols/payload.js';

function best(rounds: number, n: number, fn: () => void): number {
  let bestUs = Number.POSITIVE_INFINITY;
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) fn();
    bestUs = Math.min(bestUs, ((performance.now() - t) * 1000) / n);
  }
  return bestUs;
}

export function codecBench(): Record<string, number> {
  const reading = { ts: 1_732_200_000_123, seq: 42, values: { temperature: 21.37, humidity: 48.2, door_open: false }, tags: { room: 'a1' } };
  const json = encodePayload(reading, 'json');
  const cbor = encodePayload(reading, 'cbor');
  const out: Record<string, number> = {
    payload_json_bytes: json.length,
    payload_cbor_bytes: cbor.length,
    payload_json_encode_us: best(5, 20_000, () => encodePayload(reading, 'json')),
    payload_cbor_encode_us: best(5, 20_000, () => encodePayload(reading, 'cbor')),
    payload_json_decode_us: best(5, 20_000, () => decodePayload(json)),
    payload_cbor_decode_us: best(5, 20_000, () => decodePayload(cbor)),
  };
  const recs: RawRecord[] = [];
  for (let i = 0; i < 5000; i++) recs.push({ seq: i + 1, dev: `sim-${String(i % 100).padStart(4, '0')}`, ts: 1_732_200_000_000 + i, vals: { temperature: 20 + (i % 100) / 10, humidity: 40 + (i % 50), door_open: i % 7 === 0 }, dseq: i });
  const batch = { gw: 'gw-1', inc: '0123456789abcdef', first: 1, last: 5000, recs, aggs: [] };
  const body = encodeBatch(batch);
  out.batch_bytes_per_record = Math.round((body.length / recs.length) * 10) / 10;
  out.batch_encode_us_per_record = best(5, 10, () => encodeBatch(batch)) / recs.length;
  out.batch_decode_us_per_record = best(5, 10, () => decodeBatch(body)) / recs.length;
  for (const k of Object.keys(out)) out[k] = Math.round(out[k] * 1000) / 1000;
  return out;
}

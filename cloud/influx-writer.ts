/**
 * The sink the cloud writes points into, and the two InfluxDB implementations behind it.
 *
 * Contract of every PointSink:
 * - `write(lines)` resolves only after the server accepted every line; otherwise it rejects with
 *   SluiceError('SLUICE_INFLUX_WRITE', …, { retryable }). Nothing is buffered or retried inside the
 *   sink: the caller owns retries (the gateway resends the batch), so an ack can never run ahead of
 *   storage.
 * - Retryable: network errors, timeouts, 408, 429, 5xx, and 401/403/404 (credentials, missing
 *   database/bucket: the cloud's configuration is wrong, the data is fine, so the data must not be
 *   thrown away). Not retryable: other 4xx, i.e. InfluxDB refused the data itself (parse error, field
 *   type conflict, 413, 422).
 * - A large write is sent as several requests of at most `maxLinesPerRequest` lines, in order; if one
 *   fails the earlier ones stay written. Callers therefore only write idempotent points (the schema
 *   in points.ts guarantees that a rewrite overwrites).
 * - `write` may be called concurrently; each call is independent.
 */
export * from './influx-common.js';
export { toLine, escapeKey, escapeMeasurement, escapeStringField, escapeTagValue } from './line-protocol.js';
export type { FieldValue, LinePoint } from './line-protocol.js';
export { InfluxV1Writer } from './influx-v1.js';
export { InfluxV2Writer } from './influx-v2.js';
import type { InfluxConfig, PointSink, WriterOptions } from './influx-common.js';
import { InfluxV1Writer } from './influx-v1.js';
import { InfluxV2Writer } from './influx-v2.js';

/** A started sink for the configured InfluxDB API. */
export async function createInfluxSink(cfg: InfluxConfig, opts: WriterOptions = {}): Promise<PointSink> {
  const sink = cfg.api === 1 ? new InfluxV1Writer(cfg, opts) : new InfluxV2Writer(cfg, opts);
  await sink.start();
  return sink;
}

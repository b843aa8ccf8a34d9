/**
 * Apply one decoded, authorised batch: dedup/gap check against the gateway's high-water mark, write
 * the new points, then advance the mark.
 *
 * Guarantees (the cloud side of ARCHITECTURE.md guarantee 3, "effectively once"):
 * - The mark is stored only after the sink accepted every point of the batch, and the 200 ack is
 *   returned only after the mark is stored. A crash anywhere before leaves the mark where it was; the
 *   gateway resends and the points are rewritten onto themselves (idempotent point identity, see
 *   points.ts).
 * - A replayed batch writes nothing; a partly replayed batch writes only sequences above the mark.
 * - Batches of one gateway are applied one at a time (HwmStore.serialize).
 * - Sink failures propagate (SLUICE_INFLUX_WRITE with `retryable`); the mark is untouched.
 * - Alerts (optional `deps.alerts`): after the write succeeded, only the new records (seq > mark) go to
 *   the alert service, which returns the alert state and outbox entries they produce to be stored in
 *   the same atomic LevelDB batch as the new mark (alert-service.ts explains why this cannot fire twice).
 */
import type { Logger } from 'pino';
import type { AggRecord, Batch, BatchAck, BatchGap, RawRecord } from '../protocols/batch.js';
import type { PointSink } from './influx-common.js';
import { planBatch, type HwmStore, type SublevelOp } from './hwm-store.js';
import { toLine } from './line-protocol.js';
import type { CloudMetrics } from './metrics.js';
import type { BatchSequencer } from './sequencer.js';
import { aggToPoint, rawToLine, RAW_MEASUREMENT } from './points.js';

export interface IngestDeps {
  store: HwmStore;
  sink: PointSink;
  metrics: CloudMetrics;
  logger: Logger;
  /** The alert tier; sees each new record once, its state is stored with the mark. */
  alerts?: { afterWrite(recs: RawRecord[], aggs: AggRecord[], persist: (ops: SublevelOp[]) => Promise<void>): Promise<void> };
  /** Re-orders pipelined batches of one gateway (cloud/sequencer.ts). */
  sequencer?: BatchSequencer;
  /** Called after the mark is stored, with the records that were new (live events). Must not throw. */
  onCommitted?: (gw: string, recs: RawRecord[], aggs: AggRecord[]) => void;
}

export type IngestResult =
  | { status: 200; body: BatchAck; written: number; replayed: number }
  | { status: 409; body: BatchGap };

/**
 * `ackedHint`: what the gateway says the cloud has acknowledged so far (header `x-sluice-acked`). It
 * places the mark of an incarnation this replica has never seen; without it the first batch's start
 * is taken, which is only safe when batches arrive in order.
 */
export async function ingestBatch(batch: Batch, deps: IngestDeps, ackedHint?: number): Promise<IngestResult> {
  if (!deps.sequencer) return deps.store.serialize(batch.gw, () => apply(batch, deps, ackedHint));
  const key = `${batch.gw}\u0000${batch.inc}`;
  const slot = await deps.sequencer.admit(key, batch.first, batch.last, async () => (await deps.store.lookup(batch.gw, batch.inc)) ?? ackedHint);
  try {
    // Write the points now, overlapping with the batch before this one (idempotent: a failure of
    // either just means the gateway sends them again); commit strictly in order.
    // A batch let in after waiting in vain for its predecessor is a real gap: it writes nothing.
    let written: number | undefined;
    if (slot.inOrder) {
      const stored = await deps.store.lookup(batch.gw, batch.inc);
      written = await writePoints(batch, deps, stored ?? (ackedHint ?? batch.first - 1));
    }
    await slot.turn;
    const result = await deps.store.serialize(batch.gw, () => apply(batch, deps, ackedHint, written));
    return result;
  } finally {
    slot.done();
  }
}

/**
 * Lines per InfluxDB request when a batch is written in parts: InfluxDB parses one part while the
 * next is formatted, instead of waiting for the whole batch's lines and then taking them in one go.
 * Each request also costs InfluxDB a fixed amount (a write-ahead-log entry and its fsync, shard
 * and series lookups): in a drain that is CPU-bound on one machine (gateway, cloud and influxd on
 * two cores), parts of 2500 against 1250 drained 300k readings ~13 % faster (9 alternating pairs,
 * mean ratio to the direct writer 0.73 against 0.64; tmp probe, as `npm run bench -- --only drain`);
 * 5000 (one request per batch) was not distinguishable from 2500 in 5 more pairs.
 */
export const WRITE_PART_LINES = 2500;

/**
 * Write the records above `hw` to the sink. Returns the number of lines written.
 *
 * A large batch goes out in parts of WRITE_PART_LINES raw points, each sent as soon as it is
 * formatted; the batch's window aggregates all go in its last part, by sequence, so a later
 * revision of a window is the one InfluxDB keeps. The parts are written concurrently and the batch
 * fails, once all of them have settled, if any part failed: the gateway then sends it again, and
 * the parts that were written are rewritten onto themselves (idempotent point identity, points.ts).
 */
async function writePoints(batch: Batch, deps: IngestDeps, hw: number): Promise<number> {
  const { sink, metrics } = deps;
  const writes: Array<Promise<void>> = [];
  let count = 0;
  const send = (part: string[]): void => {
    const end = metrics.influxWrite.startTimer();
    const w = sink.write(part).finally(end);
    // A part may fail while later parts are still being formatted, before allSettled below looks
    // at it: handled now, or the process would see an unhandled rejection.
    w.catch(() => undefined);
    writes.push(w);
    count += part.length;
  };
  let lines: string[] = [];
  let raw = 0;
  const gw = batch.gw;
  for (const r of batch.recs) {
    if (r.seq <= hw) continue;
    lines.push(rawToLine(gw, r));
    raw++;
    if (lines.length === WRITE_PART_LINES) {
      // `lines` is not used after its write starts: once the sink has its request body, the line
      // strings can go at the next minor GC instead of being kept while InfluxDB answers.
      send(lines);
      lines = [];
      // Let the request go out (its socket is attached on the next tick) before formatting more.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  const perMeasurement = new Map<string, number>();
  if (raw > 0) perMeasurement.set(RAW_MEASUREMENT, raw);
  if (batch.aggs.length > 0) {
    for (const a of batch.aggs.filter((x) => x.seq > hw).sort((x, y) => x.seq - y.seq)) {
      const p = aggToPoint(gw, a);
      lines.push(toLine(p));
      perMeasurement.set(p.measurement, (perMeasurement.get(p.measurement) ?? 0) + 1);
    }
  }
  if (lines.length > 0) send(lines);
  // Every part settles before the batch's outcome is known, so a resend never overlaps parts of
  // this attempt still in flight.
  for (const r of await Promise.allSettled(writes)) if (r.status === 'rejected') throw r.reason;
  for (const [m, n] of perMeasurement) metrics.pointsWritten.inc({ measurement: m }, n);
  return count;
}

/**
 * Decide and commit one batch against the stored mark (inside the gateway's serialisation). With
 * `prewritten` the points were already written by ingestBatch (for every record above a mark no
 * higher than the one seen here), so only the decision, the alerts and the mark remain.
 */
async function apply(batch: Batch, deps: IngestDeps, ackedHint?: number, prewritten?: number): Promise<IngestResult> {
  const { store, metrics } = deps;
  // First contact of this replica with a gateway incarnation (new gateway, a wiped or replaced cloud
  // data directory, a failover to another replica): adopt the gateway's position — what it says the
  // cloud acknowledged (x-sluice-acked), else the batch's start. The gateway only ever sends what
  // follows an acknowledged position, so nothing is skipped; insisting on sequence 1 instead would
  // wedge a gateway whose older records are long deleted.
  const stored = await store.lookup(batch.gw, batch.inc);
  const hw = stored ?? (ackedHint !== undefined && ackedHint < batch.first ? ackedHint : batch.first - 1);
  if (stored === undefined && batch.first > 1) {
    deps.logger.info({ gateway: batch.gw, incarnation: batch.inc, first: batch.first, hw }, 'first batch of this gateway incarnation here: adopting its position');
  }
  const plan = planBatch(batch, hw);
  if (plan.kind === 'gap') {
    return {
      status: 409,
      body: { error: `sequence gap: batch starts at ${batch.first}, the cloud expects ${plan.expected}`, code: 'SLUICE_GAP', expected: plan.expected },
    };
  }
  if (plan.kind === 'replay') {
    metrics.replayed.inc(plan.replayed);
    return { status: 200, body: { acked: plan.acked }, written: 0, replayed: plan.replayed };
  }
  const written = prewritten ?? (await writePoints({ ...batch, recs: plan.recs, aggs: plan.aggs }, deps, hw));
  if (plan.replayed > 0) metrics.replayed.inc(plan.replayed);
  const persist = (ops: SublevelOp[]) => store.set(batch.gw, batch.inc, plan.acked, Date.now(), ops);
  if (deps.alerts) await deps.alerts.afterWrite(plan.recs, plan.aggs, persist);
  else await persist([]);
  deps.onCommitted?.(batch.gw, plan.recs, plan.aggs);
  return { status: 200, body: { acked: plan.acked }, written, replayed: plan.replayed };
}

/**
 * A batch written to InfluxDB in parts (cloud/ingest.ts writePoints) when one part fails. InfluxDB
 * cannot be made to refuse one request of a batch and take the others on demand, so the sink here
 * is a recording one that fails the write it is told to (a named stand-in); the mark store is a
 * real LevelDB in a temporary directory.
 */
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HwmStore } from '../../cloud/hwm-store.js';
import { influxWriteError, type PointSink } from '../../cloud/influx-common.js';
import { ingestBatch, WRITE_PART_LINES } from '../../cloud/ingest.js';
import { CloudMetrics } from '../../cloud/metrics.js';
import type { Batch, RawRecord } from '../../protocols/batch.js';
import { tempDir } from '../support/tmp.js';

/** Records every write it takes; refuses the writes whose 1-based numbers are in `failing`. */
class PartSink implements PointSink {
  writes: string[][] = [];
  failing = new Set<number>();
  private n = 0;

  async write(lines: string[]): Promise<void> {
    const n = ++this.n;
    // Let the other parts' writes start before this one answers, as concurrent requests would.
    await new Promise((r) => setImmediate(r));
    if (this.failing.has(n)) throw influxWriteError('InfluxDB unavailable (test)', { status: 503 });
    this.writes.push(lines);
  }

  async close(): Promise<void> {}
}

const T0 = 1732200000000;
const recs = (from: number, to: number): RawRecord[] => Array.from({ length: to - from + 1 }, (_, i) => ({ seq: from + i, dev: 'dev-p', ts: T0 + (from + i) * 1000, vals: { t: from + i } }));

describe('a batch written in parts', () => {
  let dir: { path: string; remove(): Promise<void> };
  let store: HwmStore;
  let sink: PartSink;
  const metrics = new CloudMetrics();
  const deps = () => ({ store, sink, metrics, logger: pino({ level: 'silent' }) });
  const n = 3 * WRITE_PART_LINES + 7;
  const batch: Batch = { v: 1, gw: 'gw', inc: 'inc', first: 1, last: n, recs: recs(1, n), aggs: [] };

  beforeEach(async () => {
    dir = await tempDir();
    store = new HwmStore(dir.path);
    await store.open();
    sink = new PartSink();
  });
  afterEach(async () => {
    await store.close();
    await dir.remove();
  });

  it(`is split into parts of ${WRITE_PART_LINES} lines and the rest, each point once, in sequence order`, async () => {
    const r = await ingestBatch(batch, deps());
    expect(r).toMatchObject({ status: 200, body: { acked: n }, written: n });
    expect(sink.writes.map((w) => w.length)).toEqual([WRITE_PART_LINES, WRITE_PART_LINES, WRITE_PART_LINES, 7]);
    const all = sink.writes.flat();
    expect(new Set(all).size).toBe(n);
    expect(all.map((l) => Number(/ t=(\d+)/.exec(l)![1]))).toEqual(batch.recs.map((x) => x.seq));
  });

  it('fails as a whole when one part fails: the mark stays, and the resend writes everything (the written parts onto themselves)', async () => {
    sink.failing.add(2);
    await expect(ingestBatch(batch, deps())).rejects.toMatchObject({ code: 'SLUICE_INFLUX_WRITE' });
    expect(await store.lookup('gw', 'inc')).toBeUndefined();
    // The other parts were written all the same, before the batch failed.
    expect(sink.writes).toHaveLength(3);
    const r = await ingestBatch(batch, deps());
    expect(r).toMatchObject({ status: 200, body: { acked: n } });
    expect(await store.lookup('gw', 'inc')).toBe(n);
    expect(new Set(sink.writes.flat()).size).toBe(n);
  });

  it('a part failing while later parts are still being formatted is no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      sink.failing.add(1);
      await expect(ingestBatch(batch, deps())).rejects.toMatchObject({ code: 'SLUICE_INFLUX_WRITE' });
      await new Promise((r) => setImmediate(r));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a batch of at most one part is one write', async () => {
    const small: Batch = { ...batch, last: WRITE_PART_LINES, recs: recs(1, WRITE_PART_LINES) };
    await ingestBatch(small, deps());
    expect(sink.writes.map((w) => w.length)).toEqual([WRITE_PART_LINES]);
  });
});

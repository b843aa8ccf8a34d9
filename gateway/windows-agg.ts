/**
 * Running aggregates of the window engine (gateway/windows.ts): one MetricAcc per metric per window.
 *
 * Numbers give count, min, max, mean, sum, last. A metric that only ever held booleans in a window
 * gives count, mean (fraction true) and last (a boolean). A metric that mixed both in one window is
 * treated as numeric with true = 1 and false = 0 (also for `last`), so one InfluxDB field never mixes
 * types within a point.
 *
 * `sum` is accumulated in arrival order; `mean` is sum / count. `last` is the value of the reading with
 * the greatest event time, the later-arriving one on equal event time.
 *
 * Objects here are mutable and pooled by the engine; nothing here allocates per reading.
 */
import type { MetricAggregate } from '../protocols/batch.js';
import type { MetricValue } from '../protocols/payload.js';

/** [metric, count, booleans, trues, sum, min, max, lastTs, last] — see MetricAcc. */
export type AccSnapshot = [string, number, number, number, number, number, number, number, MetricValue];

export class MetricAcc {
  /** Values seen. */
  n = 0;
  /** Of which booleans. */
  nb = 0;
  /** Of which true. */
  t = 0;
  /** Sum, min and max of all values with booleans as 0/1. */
  sum = 0;
  min = Infinity;
  max = -Infinity;
  lastTs = -Infinity;
  /** The last value: a number (a double field: storing one allocates nothing), or the boolean in lastIsBool. */
  lastNum = 0;
  lastIsBool = false;

  /** The value of the reading with the greatest event time. */
  get last(): MetricValue {
    return this.lastIsBool ? this.lastNum === 1 : this.lastNum;
  }

  reset(): void {
    this.n = 0;
    this.nb = 0;
    this.t = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = -Infinity;
    this.lastTs = -Infinity;
    this.lastNum = 0;
    this.lastIsBool = false;
  }

  /** A finite number (not -0); the engine has checked. */
  addNumber(ts: number, v: number): void {
    this.put(ts, v, false);
  }

  addBoolean(ts: number, b: boolean): void {
    const v = b ? 1 : 0;
    this.nb++;
    this.t += v;
    this.put(ts, v, true);
  }

  private put(ts: number, v: number, isBool: boolean): void {
    this.n++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    if (ts >= this.lastTs) {
      this.lastTs = ts;
      this.lastNum = v;
      this.lastIsBool = isBool;
    }
  }

  toAggregate(): MetricAggregate {
    if (this.nb === this.n) return { count: this.n, mean: this.t / this.n, last: this.last };
    return { count: this.n, min: this.min, max: this.max, mean: this.sum / this.n, sum: this.sum, last: this.lastNum };
  }

  save(metric: string): AccSnapshot {
    return [metric, this.n, this.nb, this.t, this.sum, this.min, this.max, this.lastTs, this.last];
  }

  load(s: AccSnapshot): void {
    let last: MetricValue;
    [, this.n, this.nb, this.t, this.sum, this.min, this.max, this.lastTs, last] = s;
    this.lastIsBool = typeof last === 'boolean';
    this.lastNum = typeof last === 'boolean' ? (last ? 1 : 0) : last;
  }
}

/** One window of one device and one window kind. */
export class Win {
  start = 0;
  end = 0;
  /** -1 while open; after closing, the revision last emitted (0 on close, +1 per late correction). */
  rev = -1;
  /** Metric name → aggregate, in order of first appearance in the window. */
  readonly accs = new Map<string, MetricAcc>();
}

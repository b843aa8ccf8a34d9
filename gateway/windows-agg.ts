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
  last: MetricValue = 0;

  reset(): void {
    this.n = 0;
    this.nb = 0;
    this.t = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = -Infinity;
    this.lastTs = -Infinity;
    this.last = 0;
  }

  /** `raw` is a finite number (not -0) or a boolean; the engine has checked. */
  add(ts: number, raw: MetricValue): void {
    let v: number;
    if (typeof raw === 'boolean') {
      this.nb++;
      v = raw ? 1 : 0;
      this.t += v;
    } else v = raw;
    this.n++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    if (ts >= this.lastTs) {
      this.lastTs = ts;
      this.last = raw;
    }
  }

  toAggregate(): MetricAggregate {
    if (this.nb === this.n) return { count: this.n, mean: this.t / this.n, last: this.last };
    const last = typeof this.last === 'boolean' ? (this.last ? 1 : 0) : this.last;
    return { count: this.n, min: this.min, max: this.max, mean: this.sum / this.n, sum: this.sum, last };
  }

  save(metric: string): AccSnapshot {
    return [metric, this.n, this.nb, this.t, this.sum, this.min, this.max, this.lastTs, this.last];
  }

  load(s: AccSnapshot): void {
    [, this.n, this.nb, this.t, this.sum, this.min, this.max, this.lastTs, this.last] = s;
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

/**
 * Recent rates of the gateway's counters (readings committed and forwarded per second), for
 * `/status` and `sluice gateway status`: whether a backlog is shrinking, and how soon it is empty.
 *
 * The counters are sampled by a timer (once a second); nothing is added to the per-reading paths.
 * A rate is the counter's growth since the oldest sample kept (about `windowMs` old once the
 * gateway has run that long), divided by the time since that sample; there is none until a sample
 * is `minSpanMs` old. Prometheus users get the same from `rate()` over /metrics; this is for the
 * person at the Pi's console.
 */
export interface RateSnapshot<K extends string> {
  /** Per second, over `overMs`. */
  perSecond: Record<K, number>;
  overMs: number;
}

export class CounterRates<K extends string> {
  private readonly samples: Array<{ t: number; v: Record<K, number> }> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly read: () => Record<K, number>,
    private readonly opts: { windowMs?: number; minSpanMs?: number; now?: () => number } = {},
  ) {}

  private get windowMs(): number {
    return this.opts.windowMs ?? 10_000;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** Take a sample now; samples older than the window are dropped (one is kept at its edge). */
  sample(): void {
    const t = this.now();
    this.samples.push({ t, v: this.read() });
    while (this.samples.length > 1 && this.samples[1].t <= t - this.windowMs) this.samples.shift();
  }

  /** Sample every `everyMs` until stop(); the timer does not keep the process alive. */
  start(everyMs = 1000): void {
    this.stop();
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The rates now, or undefined while there is no sample old enough. */
  rates(): RateSnapshot<K> | undefined {
    const t = this.now();
    // The oldest sample kept: at the window's edge (at most one sampling interval beyond it).
    const from = this.samples[0];
    if (from === undefined) return undefined;
    const overMs = t - from.t;
    if (overMs < (this.opts.minSpanMs ?? 1000)) return undefined;
    const cur = this.read();
    const perSecond = {} as Record<K, number>;
    for (const k of Object.keys(cur) as K[]) perSecond[k] = Math.max(0, ((cur[k] - from.v[k]) * 1000) / overMs);
    return { perSecond, overMs };
  }
}

/**
 * Seconds until a backlog of `backlog` records is empty when `inPerSec` arrive and `outPerSec` are
 * forwarded; null when it is not shrinking (or there is none).
 */
export function drainEtaSeconds(backlog: number, inPerSec: number, outPerSec: number): number | null {
  if (backlog <= 0) return null;
  const net = outPerSec - inPerSec;
  return net > 0 ? backlog / net : null;
}

/**
 * How `sluice gateway status` describes a backlog's course: ", empty in ~N s" (or min, h) while it
 * shrinks, ", not shrinking" while it does not, nothing without a backlog or before rates exist.
 */
export function backlogTrend(backlog: number, rates: unknown, drainEtaSec: number | null): string {
  if (!rates || backlog <= 0) return '';
  if (drainEtaSec === null) return ', not shrinking';
  const s = Math.ceil(drainEtaSec);
  return `, empty in ~${s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`}`;
}

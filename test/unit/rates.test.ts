import { describe, expect, it } from 'vitest';
import { backlogTrend, CounterRates, drainEtaSeconds } from '../../gateway/rates.js';

describe('recent counter rates (gateway /status)', () => {
  function meter() {
    let now = 1_000_000;
    const c = { committed: 0, forwarded: 0 };
    const rates = new CounterRates(() => ({ ...c }), { windowMs: 10_000, minSpanMs: 1000, now: () => now });
    return { rates, c, advance: (ms: number) => (now += ms) };
  }

  it('has no rate until a sample is a second old, then growth per second since the oldest sample', () => {
    const { rates, c, advance } = meter();
    expect(rates.rates()).toBeUndefined();
    rates.sample();
    advance(500);
    c.committed = 100;
    expect(rates.rates()).toBeUndefined();
    advance(1500);
    c.committed = 400;
    c.forwarded = 1000;
    expect(rates.rates()).toEqual({ perSecond: { committed: 200, forwarded: 500 }, overMs: 2000 });
  });

  it('forgets what happened before the window: a burst long ago does not count', () => {
    const { rates, c, advance } = meter();
    rates.sample();
    c.forwarded = 1_000_000; // a burst in the first second
    for (let s = 1; s <= 30; s++) {
      advance(1000);
      rates.sample();
    }
    c.forwarded += 2000;
    advance(500);
    // The oldest sample kept is 10.5 s old and already counted the burst.
    const r = rates.rates()!;
    expect(r.overMs).toBe(10_500);
    expect(r.perSecond.forwarded).toBeCloseTo(2000 / 10.5, 6);
    expect(r.perSecond.committed).toBe(0);
  });

  it('drainEtaSeconds: backlog over the net rate; null when there is no backlog or it is not shrinking', () => {
    expect(drainEtaSeconds(10_000, 1000, 3000)).toBe(5);
    expect(drainEtaSeconds(10_000, 3000, 3000)).toBeNull();
    expect(drainEtaSeconds(10_000, 3000, 1000)).toBeNull();
    expect(drainEtaSeconds(0, 0, 5000)).toBeNull();
  });

  it('backlogTrend: how `sluice gateway status` words the backlog\'s course', () => {
    const r = { committedPerSec: 1, forwardedPerSec: 2, overSec: 10 };
    expect(backlogTrend(500, r, 4.2)).toBe(', empty in ~5 s');
    expect(backlogTrend(500, r, 600)).toBe(', empty in ~10 min');
    expect(backlogTrend(500, r, 5 * 3600)).toBe(', empty in ~5.0 h');
    expect(backlogTrend(500, r, null)).toBe(', not shrinking');
    expect(backlogTrend(0, r, null)).toBe('');
    expect(backlogTrend(500, null, null)).toBe('');
  });
});

/** Simulated signals: deterministic per seed, plausible ranges, a door that opens rarely. */
import { describe, expect, it } from 'vitest';
import { DeviceSignals, deriveSeed, mulberry32, type Reading } from '../../devices-sim/signals.js';

const series = (seed: number, n: number, dt = 1): Reading[] => {
  const s = new DeviceSignals(seed);
  return Array.from({ length: n }, () => s.next(dt));
};

describe('mulberry32 / deriveSeed', () => {
  it('is a fixed sequence in [0, 1) for a seed', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    // Pinned: the simulator's output must not change silently between versions.
    expect(mulberry32(1)()).toBeCloseTo(0.6270739405881613, 15);
    expect(new Set(xs).size).toBe(1000);
  });

  it('derives distinct 32-bit seeds per device', () => {
    const seeds = Array.from({ length: 10_000 }, (_, i) => deriveSeed(7, i));
    expect(new Set(seeds).size).toBe(10_000);
    expect(seeds.every((s) => Number.isInteger(s) && s >= 0 && s < 2 ** 32)).toBe(true);
    expect(deriveSeed(7, 3)).toBe(deriveSeed(7, 3));
    expect(deriveSeed(7, 3)).not.toBe(deriveSeed(8, 3));
  });
});

describe('DeviceSignals', () => {
  it('gives the same readings for the same seed, different ones for another', () => {
    expect(series(123, 500)).toEqual(series(123, 500));
    expect(series(123, 50)).not.toEqual(series(124, 50));
  });

  it('stays in plausible ranges over a simulated day, with the stated precision', () => {
    for (const seed of [1, 2, 3, 99, 2 ** 32 - 1]) {
      const xs = series(seed, 86_400 / 5, 5);
      const temps = xs.map((r) => r.temperature);
      const hums = xs.map((r) => r.humidity);
      expect(Math.min(...temps)).toBeGreaterThanOrEqual(18);
      expect(Math.max(...temps)).toBeLessThanOrEqual(26);
      expect(Math.min(...hums)).toBeGreaterThanOrEqual(30);
      expect(Math.max(...hums)).toBeLessThanOrEqual(70);
      expect(temps.every((t) => Math.round(t * 100) / 100 === t)).toBe(true);
      expect(hums.every((h) => Math.round(h * 10) / 10 === h)).toBe(true);
      expect(xs.every((r) => typeof r.door_open === 'boolean')).toBe(true);
      // It drifts: not a constant, and neighbouring readings are close (a walk, not white noise).
      expect(Math.max(...temps) - Math.min(...temps)).toBeGreaterThan(0.5);
      const steps = temps.slice(1).map((t, i) => Math.abs(t - temps[i]));
      expect(steps.reduce((a, b) => a + b, 0) / steps.length).toBeLessThan(0.5);
    }
  });

  it('opens the door rarely, and closes it again', () => {
    const xs = series(5, 100_000, 1);
    const open = xs.filter((r) => r.door_open).length;
    const openings = xs.filter((r, i) => r.door_open && !xs[i - 1]?.door_open).length;
    expect(openings).toBeGreaterThan(10);
    expect(open / xs.length).toBeLessThan(0.1);
  });

  it('tolerates dt of zero and huge dt', () => {
    const s = new DeviceSignals(1);
    for (const dt of [0, 1e9, 0.001]) {
      const r = s.next(dt);
      expect(Number.isFinite(r.temperature) && Number.isFinite(r.humidity)).toBe(true);
    }
  });
});

/**
 * Plausible sensor signals for one simulated device, deterministic for a given seed.
 *
 * - temperature: an Ornstein-Uhlenbeck walk (random walk pulled back to its mean), mean drawn per
 *   device in 20–24 °C, staying within ~18–26 °C, plus small measurement noise; 2 decimals.
 * - humidity: the same kind of walk around 50 %, kept within 30–70 %; 1 decimal.
 * - door_open: closed most of the time; opens rarely and closes again after a few readings.
 *
 * Determinism: the same seed and the same sequence of `next(dtSeconds)` calls give the same
 * values on every machine (only the seeded PRNG below is used, never Math.random).
 */

/** A type alias, not an interface, so it is assignable to payload v1's `Values` map. */
export type Reading = {
  temperature: number;
  humidity: number;
  door_open: boolean;
};

/** mulberry32: a tiny 32-bit PRNG, good enough for simulation, identical everywhere. Returns [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes a run seed and a device index into an independent per-device seed (splitmix32 finaliser). */
export function deriveSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A standard normal sample (Box–Muller) from a uniform PRNG. */
function gaussian(rand: () => number): number {
  const u = 1 - rand(); // (0, 1]: log(0) is never taken
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, x));
const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** Mean-reversion rates (1/s) and volatilities (unit/√s) of the two walks. */
const TEMP = { theta: 1 / 600, sigma: 0.05, noise: 0.05, lo: 18, hi: 26 };
const HUM = { theta: 1 / 900, sigma: 0.2, noise: 0.3, lo: 30, hi: 70 };
/** Door: chance per second of opening, and of closing once open. */
const DOOR = { open: 1 / 600, close: 1 / 20 };

export class DeviceSignals {
  private readonly rand: () => number;
  private readonly tempMean: number;
  private temp: number;
  private hum: number;
  private door = false;

  constructor(seed: number) {
    this.rand = mulberry32(seed);
    this.tempMean = 20 + 4 * this.rand();
    this.temp = this.tempMean + gaussian(this.rand) * 0.5;
    this.hum = 40 + 20 * this.rand();
  }

  /** Advances the signals by `dtSeconds` of simulated time and returns the reading. */
  next(dtSeconds = 1): Reading {
    const dt = clamp(dtSeconds, 0, 60);
    const r = this.rand;
    this.temp += TEMP.theta * (this.tempMean - this.temp) * dt + TEMP.sigma * Math.sqrt(dt) * gaussian(r);
    this.temp = clamp(this.temp, TEMP.lo + 0.5, TEMP.hi - 0.5);
    this.hum += HUM.theta * (50 - this.hum) * dt + HUM.sigma * Math.sqrt(dt) * gaussian(r);
    this.hum = clamp(this.hum, HUM.lo + 1, HUM.hi - 1);
    // Probability of at least one switch during dt, for a per-second rate p: 1 - (1 - p)^dt.
    const p = 1 - (1 - (this.door ? DOOR.close : DOOR.open)) ** dt;
    if (r() < p) this.door = !this.door;
    return {
      temperature: round(clamp(this.temp + TEMP.noise * gaussian(r), TEMP.lo, TEMP.hi), 2),
      humidity: round(clamp(this.hum + HUM.noise * gaussian(r), HUM.lo, HUM.hi), 1),
      door_open: this.door,
    };
  }
}

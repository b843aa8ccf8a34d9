/**
 * The wall clock the alert engine and the notification outbox use, injectable so tests can drive
 * absent-data timers and retry backoff without sleeping (test/support/cloud-clock.ts has a manual one).
 *
 * Only wall-clock concerns go through it: when a silent device's deadline passes, when a failed
 * notification is retried. Alert conditions themselves are evaluated in event time (the readings'
 * own timestamps), never with this clock.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    // Timers of the alert tier never keep the process alive: stop() is what ends it.
    return setTimeout(fn, Math.max(0, ms)).unref();
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

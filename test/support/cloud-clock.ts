/**
 * A manual Clock (cloud/clock.ts) for alert tests: time moves only when the test calls `advance`,
 * which runs every timer that became due, in deadline order.
 */
import type { Clock } from '../../cloud/clock.js';

interface Timer {
  at: number;
  fn: () => void;
  id: number;
}

export class ManualClock implements Clock {
  private t: number;
  private timers: Timer[] = [];
  private nextId = 1;

  constructor(start = Date.parse('2024-11-21T14:00:00Z')) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer = { at: this.t + Math.max(0, ms), fn, id: this.nextId++ };
    this.timers.push(timer);
    return timer.id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }

  /** Deadlines of the timers still armed (ascending). */
  pending(): number[] {
    return this.timers.map((x) => x.at).sort((a, b) => a - b);
  }

  /** Move time forward by `ms`, running each timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }
}

/**
 * The live status line of `sluice sim`, on stderr so stdout stays clean for the final summary:
 *
 *   sim: 50 devices, sent 1234, acked 1230, 98.7/s, errors 0
 *
 * On a TTY the line is rewritten in place (\r) every 500 ms; otherwise (CI logs, pipes) one line is
 * printed every 5 s. The rate is acked readings per second since the previous line.
 * `update()` may be called as often as convenient; it prints only when a line is due.
 */
import type { SimStats } from './sim.js';

export interface StatusLineOptions {
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Overrides the TTY detection of `stream`. */
  tty?: boolean;
  /** Overrides the interval between lines (ms). */
  intervalMs?: number;
  now?: () => number;
}

export function formatStatus(s: Pick<SimStats, 'devices' | 'sent' | 'acked' | 'errors'>, rate: number): string {
  return `sim: ${s.devices} devices, sent ${s.sent}, acked ${s.acked}, ${rate.toFixed(1)}/s, errors ${s.errors}`;
}

export class StatusLine {
  private readonly stream: NodeJS.WritableStream;
  private readonly tty: boolean;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private lastAt: number;
  private lastAcked = 0;
  private width = 0;

  constructor(opts: StatusLineOptions = {}) {
    const stream = opts.stream ?? process.stderr;
    this.stream = stream;
    this.tty = opts.tty ?? Boolean(stream.isTTY);
    this.intervalMs = opts.intervalMs ?? (this.tty ? 500 : 5000);
    this.now = opts.now ?? Date.now;
    this.lastAt = this.now();
  }

  /** Feeds the latest counters; prints a line when one is due. */
  update(stats: SimStats): void {
    const t = this.now();
    if (t - this.lastAt < this.intervalMs) return;
    this.print(stats, t);
  }

  /** Ends the live line (TTY: moves to a fresh line) so the summary prints below it. */
  done(): void {
    if (this.tty && this.width > 0) this.stream.write('\n');
    this.width = 0;
  }

  private print(stats: SimStats, t: number): void {
    const rate = ((stats.acked - this.lastAcked) * 1000) / Math.max(1, t - this.lastAt);
    this.lastAt = t;
    this.lastAcked = stats.acked;
    const line = formatStatus(stats, rate);
    if (this.tty) {
      // Pad over the remains of a longer previous line.
      this.stream.write(`\r${line.padEnd(this.width)}`);
      this.width = Math.max(this.width, line.length);
    } else {
      this.stream.write(`${line}\n`);
    }
  }
}

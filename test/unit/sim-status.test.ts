/** The sim status line: TTY rewrites one line every 500 ms, otherwise one line every 5 s. */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatStatus, StatusLine } from '../../devices-sim/status.js';
import type { SimStats } from '../../devices-sim/sim.js';

function sink(): Writable & { text: string } {
  const w = new Writable({
    write(chunk, _enc, cb) {
      w.text += String(chunk);
      cb();
    },
  }) as Writable & { text: string };
  w.text = '';
  return w;
}

const stats = (acked: number, extra: Partial<SimStats> = {}): SimStats => ({ devices: 50, connected: 50, sent: acked + 4, acked, errors: 0, elapsedMs: 0, ...extra });

describe('formatStatus', () => {
  it('writes the documented line', () => {
    expect(formatStatus({ devices: 50, sent: 1234, acked: 1230, errors: 0 }, 98.7)).toBe('sim: 50 devices, sent 1234, acked 1230, 98.7/s, errors 0');
  });
});

describe('StatusLine', () => {
  it('on a TTY rewrites one line every 500 ms with the rate since the last line', () => {
    let t = 0;
    const out = sink();
    const s = new StatusLine({ stream: out, tty: true, now: () => t });
    t = 400;
    s.update(stats(10));
    expect(out.text).toBe('');
    t = 500;
    s.update(stats(100));
    expect(out.text).toBe('\rsim: 50 devices, sent 104, acked 100, 200.0/s, errors 0');
    t = 1000;
    s.update(stats(150, { errors: 3 }));
    expect(out.text.split('\r')).toHaveLength(3);
    expect(out.text.endsWith('\rsim: 50 devices, sent 154, acked 150, 100.0/s, errors 3')).toBe(true);
    s.done();
    expect(out.text.endsWith('\n')).toBe(true);
    expect(out.text.includes('\n')).toBe(true);
  });

  it('pads over a longer previous line', () => {
    let t = 0;
    const out = sink();
    const s = new StatusLine({ stream: out, tty: true, now: () => t });
    t = 500;
    s.update(stats(1_000_000, { errors: 12345 }));
    const first = out.text.length - 1;
    t = 1000;
    s.update(stats(1_000_001));
    expect(out.text.length - first - 2).toBe(first);
  });

  it('without a TTY prints whole lines every 5 s', () => {
    let t = 0;
    const out = sink();
    const s = new StatusLine({ stream: out, tty: false, now: () => t });
    for (t = 500; t < 5000; t += 500) s.update(stats(t));
    expect(out.text).toBe('');
    t = 5000;
    s.update(stats(500));
    expect(out.text).toBe('sim: 50 devices, sent 504, acked 500, 100.0/s, errors 0\n');
    s.done();
    expect(out.text).toBe('sim: 50 devices, sent 504, acked 500, 100.0/s, errors 0\n');
  });

  it('follows the stream for TTY detection', () => {
    const out = Object.assign(sink(), { isTTY: true });
    let t = 0;
    const s = new StatusLine({ stream: out, now: () => t });
    t = 500;
    s.update(stats(1));
    expect(out.text.startsWith('\r')).toBe(true);
  });
});

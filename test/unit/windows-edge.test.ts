/**
 * Table tests of the window engine's rules at their edges: boundaries, `last` on equal event time,
 * booleans, hopping overlap, per-device watermarks, late data and grace, idle close on an injected
 * clock and on fake timers, eviction, config validation and snapshot checks.
 */
import { Decoder, Encoder } from 'cbor-x';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Values } from '../../protocols/payload.js';
import {
  formatDuration,
  parseWindowSpec,
  resolveWindowConfig,
  WindowEngine,
  windowName,
  type WindowConfig,
  type WindowOutput,
} from '../../gateway/windows.js';

/** Aligned to 5 minutes (and so to 1 m, 3 s, 1 s). */
const B = 1_700_000_100_000;
const M = 60_000;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

function engine(config: WindowConfig = {}): { e: WindowEngine; clock: { now: number } } {
  const clock = { now: 0 };
  return { e: new WindowEngine({ ...config, now: () => clock.now }), clock };
}

/** Window start and count of one metric, for compact expectations. */
function brief(outs: readonly WindowOutput[], metric = 'x'): Array<[string, string, number, number, number]> {
  return outs.map((o) => [o.dev, o.win, o.start - B, o.rev, o.aggs[metric]?.count ?? 0]);
}

describe('window config', () => {
  it.each([
    ['1m', 60_000, 60_000],
    ['30s', 30_000, 30_000],
    ['5m/1m', 300_000, 60_000],
    ['5m / 1m', 300_000, 60_000],
    ['5m every 1m', 300_000, 60_000],
    ['5m_1m', 300_000, 60_000],
    ['1h30m', 5_400_000, 5_400_000],
    ['1m/1m', 60_000, 60_000],
    ['60000', 60_000, 60_000],
  ])('parseWindowSpec(%j)', (spec, size, advance) => {
    expect(parseWindowSpec(spec)).toEqual({ size, advance });
  });

  it.each(['', 'abc', '0s', '1m/5m', '1m/0s', '5m/1m/1m', '1.5ms', '1d/1s', '-1m'])('parseWindowSpec(%j) is SLUICE_BAD_CONFIG', (spec) => {
    expect(codeOf(() => parseWindowSpec(spec))).toBe('SLUICE_BAD_CONFIG');
  });

  it.each([
    [{ size: 60_000 }, '1m'],
    [{ size: 60_000, advance: 60_000 }, '1m'],
    [{ size: 300_000, advance: 60_000 }, '5m_1m'],
    [{ size: 90_000 }, '1m30s'],
    [{ size: 1500, advance: 500 }, '1s500ms_500ms'],
    [{ size: 3_600_000 }, '1h'],
    [{ size: 86_400_000, advance: 3_600_000 }, '1d_1h'],
  ])('windowName(%j) = %s', (spec, name) => {
    expect(windowName(spec)).toBe(name);
  });

  it('formatDuration', () => {
    expect([formatDuration(0), formatDuration(1), formatDuration(61_001)]).toEqual(['0ms', '1ms', '1m1s1ms']);
  });

  it('defaults: one 1m tumbling window, 10 s lateness, 60 s grace, idle 2 × largest + lateness', () => {
    const c = resolveWindowConfig();
    expect(c.windows).toEqual([{ name: '1m', size: M, advance: M }]);
    expect([c.allowedLatenessMs, c.graceMs, c.idleTimeoutMs, c.evictAfterMs]).toEqual([10_000, 60_000, 130_000, 86_400_000]);
    expect(resolveWindowConfig({ windows: ['1m', '5m/1m'] }).idleTimeoutMs).toBe(610_000);
    expect(resolveWindowConfig({ windows: [{ size: 300_000, advance: M }] }).windows[0].name).toBe('5m_1m');
  });

  it.each<[string, WindowConfig]>([
    ['empty list', { windows: [] }],
    ['same name twice', { windows: ['1m', '60s'] }],
    ['advance > size', { windows: [{ size: M, advance: 2 * M }] }],
    ['zero size', { windows: [{ size: 0 }] }],
    ['fractional size', { windows: [{ size: 1.5 }] }],
    ['unknown window key', { windows: [{ size: M, every: 1 } as never] }],
    ['not a spec', { windows: [42 as never] }],
    ['too many overlapping windows', { windows: ['1d/1m'] }],
    ['negative lateness', { allowedLatenessMs: -1 }],
    ['NaN grace', { graceMs: Number.NaN }],
    ['infinite lateness', { allowedLatenessMs: Infinity }],
    ['zero idle timeout', { idleTimeoutMs: 0 }],
    ['eviction before idle close', { idleTimeoutMs: 10_000, evictAfterMs: 9_999 }],
    ['unknown key', { windowz: ['1m'] } as never],
    ['clock not a function', { now: 5 as never }],
  ])('%s is SLUICE_BAD_CONFIG', (_what, config) => {
    expect(codeOf(() => new WindowEngine(config))).toBe('SLUICE_BAD_CONFIG');
  });
});

describe('assignment and aggregates', () => {
  it.each([
    [0, 0],
    [1, 0],
    [59_999, 0],
    [60_000, 60_000],
    [60_001, 60_000],
    [-1, -60_000],
  ])('a reading at B%+d ms falls in the 1m window starting at B%+d', (offset, start) => {
    const { e } = engine();
    e.add('d', B + offset, { x: 1 });
    expect(brief(e.flushAll())).toEqual([['d', '1m', start, 0, 1]]);
  });

  it('closes exactly when the watermark reaches the end', () => {
    const { e } = engine({ allowedLatenessMs: 10_000 });
    expect(e.add('d', B + 1000, { x: 1 })).toEqual([]);
    expect(e.add('d', B + 69_999, { x: 2 })).toEqual([]); // watermark B + 59 999
    expect(e.watermark('d')).toBe(B + 59_999);
    const out = e.add('d', B + 70_000, { x: 3 }); // watermark B + 60 000 = end
    expect(out).toEqual([{ dev: 'd', win: '1m', start: B, end: B + M, rev: 0, aggs: { x: { count: 1, min: 1, max: 1, mean: 1, sum: 1, last: 1 } } }]);
    expect(e.counters()).toMatchObject({ readings: 3, windowsClosed: 1, windowsRevised: 0, lateDropped: 0 });
  });

  it('last is the value with the greatest event time; on a tie, the later arrival', () => {
    const { e } = engine();
    e.add('d', B + 10, { x: 1 });
    e.add('d', B + 10, { x: 2 }); // same ts, arrives later: wins
    e.add('d', B + 5, { x: 3 }); // older ts, arrives later: does not
    const [one] = e.flushAll();
    expect(one.aggs.x).toEqual({ count: 3, min: 1, max: 3, mean: 2, sum: 6, last: 2 });
    const { e: e2 } = engine();
    e2.add('d', B + 10, { x: 1 });
    e2.add('d', B + 5, { x: 3 });
    e2.add('d', B + 10, { x: 4 });
    expect(e2.flushAll()[0].aggs.x.last).toBe(4);
  });

  it('a boolean-only metric gives count, mean (fraction true) and last, nothing else', () => {
    const { e } = engine();
    for (const [i, v] of [true, false, true, true].entries()) e.add('d', B + i, { door: v });
    e.add('d', B + 100, { door: false });
    e.add('d', B + 50, { door: true }); // not the latest event time
    const [one] = e.flushAll();
    expect(one.aggs).toEqual({ door: { count: 6, mean: 4 / 6, last: false } });
    expect(Object.keys(one.aggs.door).sort()).toEqual(['count', 'last', 'mean']);
  });

  it('a metric mixing numbers and booleans in one window is numeric with true = 1, false = 0', () => {
    const { e } = engine();
    e.add('d', B + 1, { m: true });
    e.add('d', B + 2, { m: 5 });
    e.add('d', B + 3, { m: false });
    expect(e.flushAll()[0].aggs.m).toEqual({ count: 3, min: 0, max: 5, mean: 2, sum: 6, last: 0 });
  });

  it('metrics are aggregated independently, each over the readings that carry it', () => {
    const { e } = engine();
    e.add('d', B + 1, { a: 1, b: true });
    e.add('d', B + 2, { a: 3 });
    e.add('d', B + 3, { c: -2.5 });
    expect(e.flushAll()[0].aggs).toEqual({
      a: { count: 2, min: 1, max: 3, mean: 2, sum: 4, last: 3 },
      b: { count: 1, mean: 1, last: true },
      c: { count: 1, min: -2.5, max: -2.5, mean: -2.5, sum: -2.5, last: -2.5 },
    });
  });

  it('hopping 5m every 1m: one reading is in five windows', () => {
    const { e } = engine({ windows: ['5m/1m'] });
    e.add('d', B + 150_000, { x: 7 });
    const outs = e.flushAll();
    expect(brief(outs)).toEqual([-120_000, -60_000, 0, 60_000, 120_000].map((s) => ['d', '5m_1m', s, 0, 1]));
    for (const o of outs) expect(o.end - o.start).toBe(300_000);
  });

  it('tumbling and hopping together, sorted by end then window name', () => {
    const { e } = engine({ windows: ['5m/1m', '1m'] });
    e.add('d', B + 30_000, { x: 1 });
    expect(brief(e.flushAll()).map(([, w, s]) => `${w}@${s}`)).toEqual([
      '1m@0', '5m_1m@-240000', '5m_1m@-180000', '5m_1m@-120000', '5m_1m@-60000', '5m_1m@0',
    ]);
  });

  it('size not a multiple of advance: 7s every 3s', () => {
    const { e } = engine({ windows: ['7s/3s'] });
    e.add('d', B + 10_000, { x: 1 }); // starts ≤ ts < start + 7 s, multiples of 3 s: 6 s and 9 s
    expect(brief(e.flushAll()).map(([, , s]) => s)).toEqual([6000, 9000]);
  });

  it('accepts any finite event time, including 0, negative and fractional', () => {
    const { e } = engine({ allowedLatenessMs: 0 });
    const outs = [...e.add('d', -1, { x: 1 }), ...e.add('d', 0.5, { x: 2 }), ...e.flushAll()];
    expect(outs.map((o) => [o.start, o.end, o.aggs.x.sum])).toEqual([[-60_000, 0, 1], [0, 60_000, 2]]);
  });

  it('normalises -0 so a snapshot round-trips through JSON exactly', () => {
    const { e } = engine();
    e.add('d', -0, { x: -0 });
    const snap = e.snapshot();
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
    expect(Object.is(e.flushAll()[0].aggs.x.sum, 0)).toBe(true);
  });

  it('a reading without values moves the watermark and opens no window', () => {
    const { e } = engine({ allowedLatenessMs: 0 });
    e.add('d', B + 1000, { x: 1 });
    expect(brief(e.add('d', B + 130_000, {}))).toEqual([['d', '1m', 0, 0, 1]]);
    expect(e.stats()).toMatchObject({ readings: 2, openWindows: 0 });
  });

  it.each<[string, number, Values]>([
    ['NaN ts', Number.NaN, { x: 1 }],
    ['infinite ts', Infinity, { x: 1 }],
    ['unsafe ts', 2 ** 60, { x: 1 }],
    ['NaN value', B, { x: Number.NaN }],
    ['string value', B, { x: 'hot' as never }],
    ['null value', B, { x: null as never }],
    ['__proto__ metric', B, JSON.parse('{"__proto__": 1}') as Values],
  ])('%s is SLUICE_BAD_PAYLOAD and changes nothing', (_what, ts, vals) => {
    const { e } = engine();
    e.add('d', B, { x: 1 });
    e.snapshot();
    const before = e.snapshot();
    expect(codeOf(() => e.add('d', ts, { ok: 1, ...vals }))).toBe('SLUICE_BAD_PAYLOAD');
    expect(e.dirty).toBe(false);
    expect(e.snapshot()).toEqual(before);
  });
});

describe('watermarks', () => {
  it('are per device', () => {
    const { e } = engine({ allowedLatenessMs: 10_000 });
    e.add('a', B + 1000, { x: 1 });
    e.add('b', B + 1000, { x: 1 });
    expect(brief(e.add('a', B + 200_000, { x: 2 }))).toEqual([['a', '1m', 0, 0, 1]]);
    expect(e.watermark('a')).toBe(B + 190_000);
    expect(e.watermark('b')).toBe(B - 9000);
    expect(e.watermark('nobody')).toBe(-Infinity);
    expect(e.stats()).toMatchObject({ devices: 2, openWindows: 2 });
    // b's window is still open: its out-of-order reading is simply added.
    expect(e.add('b', B + 500, { x: 5 })).toEqual([]);
    expect(brief(e.flushAll())).toEqual([['b', '1m', 0, 0, 2], ['a', '1m', 180_000, 0, 1]]);
  });

  it('never go back', () => {
    const { e } = engine({ allowedLatenessMs: 10_000 });
    e.add('d', B + 100_000, { x: 1 });
    e.add('d', B + 95_000, { x: 1 });
    expect(e.watermark('d')).toBe(B + 90_000);
  });

  it('out-of-order readings within lateness count in their window', () => {
    const { e } = engine({ allowedLatenessMs: 10_000 });
    e.add('d', B + 50_000, { x: 1 });
    e.add('d', B + 65_000, { x: 2 });
    e.add('d', B + 55_000, { x: 3 }); // watermark B + 55 000 < end
    const [w] = e.add('d', B + 70_000, { x: 4 });
    expect(w.aggs.x).toEqual({ count: 2, min: 1, max: 3, mean: 2, sum: 4, last: 3 });
  });

  it('a jump far ahead emits the open window and discards it in the same call', () => {
    const { e } = engine({ allowedLatenessMs: 10_000, graceMs: 60_000 });
    e.add('d', B + 1000, { x: 1 });
    expect(brief(e.add('d', B + 3_600_000, { x: 2 }))).toEqual([['d', '1m', 0, 0, 1]]);
    expect(e.stats()).toMatchObject({ openWindows: 1, closedWindows: 0 });
  });
});

describe('late data and grace', () => {
  it('a late reading within grace re-emits the window with rev + 1', () => {
    const { e } = engine({ allowedLatenessMs: 0, graceMs: 60_000 });
    e.add('d', B + 1000, { x: 1 });
    expect(brief(e.add('d', B + M, { x: 9 }))).toEqual([['d', '1m', 0, 0, 1]]);
    const [r1] = e.add('d', B + 30_000, { x: 2 });
    expect(r1).toEqual({ dev: 'd', win: '1m', start: B, end: B + M, rev: 1, aggs: { x: { count: 2, min: 1, max: 2, mean: 1.5, sum: 3, last: 2 } } });
    expect(brief(e.add('d', B + 40_000, { x: 3 }))).toEqual([['d', '1m', 0, 2, 3]]);
    expect(e.counters()).toMatchObject({ windowsClosed: 1, windowsRevised: 2, lateDropped: 0 });
  });

  it('grace ends when watermark − end reaches graceMs; later readings are counted, not aggregated', () => {
    const { e } = engine({ allowedLatenessMs: 0, graceMs: 60_000 });
    e.add('d', B + 1000, { x: 1 });
    e.add('d', B + 119_999, { x: 1 }); // watermark end + grace − 1
    expect(e.stats().closedWindows).toBe(1);
    expect(brief(e.add('d', B + 2000, { x: 1 }))).toEqual([['d', '1m', 0, 1, 2]]);
    expect(brief(e.add('d', B + 120_000, { x: 1 }))).toEqual([['d', '1m', 60_000, 0, 1]]);
    expect(e.stats().closedWindows).toBe(1); // B's window discarded, B + 1m's kept
    expect(e.add('d', B + 3000, { x: 1 })).toEqual([]);
    expect(e.counters()).toMatchObject({ lateDropped: 1, windowsRevised: 1, windowsClosed: 2, readings: 5 });
  });

  it('a window that closed empty is emitted as rev 0 by its first late reading', () => {
    const { e } = engine({ allowedLatenessMs: 0, graceMs: 60_000 });
    e.add('d', B + 1000, { x: 1 });
    e.add('d', B + 125_000, { x: 1 }); // [B+1m, B+2m) closed without data
    expect(brief(e.add('d', B + 70_000, { x: 1 }))).toEqual([['d', '1m', 60_000, 0, 1]]);
    expect(brief(e.add('d', B + 80_000, { x: 1 }))).toEqual([['d', '1m', 60_000, 1, 2]]);
    expect(e.counters()).toMatchObject({ windowsClosed: 2, windowsRevised: 1 });
  });

  it('with grace 0 a closed window is gone at once', () => {
    const { e } = engine({ allowedLatenessMs: 0, graceMs: 0 });
    e.add('d', B + 1000, { x: 1 });
    e.add('d', B + M, { x: 1 });
    expect(e.stats().closedWindows).toBe(0);
    expect(e.add('d', B + 2000, { x: 1 })).toEqual([]);
    expect(e.counters().lateDropped).toBe(1);
  });

  it('lateDropped counts (reading, window) pairs: a hopping reading can be partly late', () => {
    const { e } = engine({ windows: ['5m/1m'], allowedLatenessMs: 0, graceMs: 0 });
    e.add('d', B + 150_000, { x: 1 });
    expect(e.add('d', B + 400_000, { x: 1 })).toHaveLength(4); // ends 3m, 4m, 5m, 6m
    expect(e.add('d', B + 150_000, { x: 2 })).toEqual([]); // accepted by [2m, 7m) only
    expect(e.counters().lateDropped).toBe(4);
    const last = e.flushAll().find((o) => o.start === B + 120_000);
    expect(last?.aggs.x).toMatchObject({ count: 3, sum: 4 }); // 2.5 m, 6 m 40 s, and the late one
  });
});

describe('idle close', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('closes a silent device after idleTimeoutMs on the injected clock', () => {
    const { e, clock } = engine({ idleTimeoutMs: 30_000 });
    clock.now = 1000;
    e.add('d', B + 1000, { x: 1 });
    expect(e.tick(30_999)).toEqual([]);
    expect(brief(e.tick(31_000))).toEqual([['d', '1m', 0, 0, 1]]);
    expect(e.counters()).toMatchObject({ windowsClosed: 1, idleClosed: 1 });
    expect(e.watermark('d')).toBe(B + M);
    expect(e.tick(100_000)).toEqual([]);
    // What arrives for the idle-closed window now is late data within grace.
    clock.now = 40_000;
    expect(brief(e.add('d', B + 2000, { x: 2 }))).toEqual([['d', '1m', 0, 1, 2]]);
    expect(e.add('d', B + 61_000, { x: 3 })).toEqual([]);
    expect(e.stats().openWindows).toBe(1);
  });

  it('tick() without an argument reads the configured clock', () => {
    const { e, clock } = engine({ idleTimeoutMs: 5000 });
    e.add('d', B, { x: 1 });
    clock.now = 4999;
    expect(e.tick()).toEqual([]);
    clock.now = 5000;
    expect(e.tick()).toHaveLength(1);
  });

  it('works from a gateway timer under fake timers, with the default clock', () => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
    const e = new WindowEngine(); // idle timeout 130 s, Date.now clock
    const outs: WindowOutput[] = [];
    const timer = setInterval(() => outs.push(...e.tick()), 1000);
    e.add('d', B + 1000, { x: 1 });
    vi.advanceTimersByTime(129_000);
    expect(outs).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(brief(outs)).toEqual([['d', '1m', 0, 0, 1]]);
    clearInterval(timer);
  });

  it('only silent devices are closed', () => {
    const { e, clock } = engine({ idleTimeoutMs: 30_000 });
    e.add('quiet', B + 1000, { x: 1 });
    for (let t = 0; t <= 60_000; t += 10_000) {
      clock.now = t;
      e.add('busy', B + 1000 + t / 100, { x: 1 }); // event time barely moves: its window stays open
    }
    expect(brief(e.tick(60_000))).toEqual([['quiet', '1m', 0, 0, 1]]);
    expect(e.stats()).toMatchObject({ openWindows: 1, devices: 2 });
  });

  it('closes every open hopping window and raises the watermark to the latest end', () => {
    const { e } = engine({ windows: ['5m/1m'], idleTimeoutMs: 10_000 });
    e.add('d', B + 150_000, { x: 1 });
    expect(e.tick(10_000)).toHaveLength(5);
    expect(e.watermark('d')).toBe(B + 420_000);
    expect(e.counters().idleClosed).toBe(5);
  });

  it('forgets a device after evictAfterMs of silence', () => {
    const { e } = engine({ idleTimeoutMs: 30_000, evictAfterMs: 100_000 });
    e.add('d', B + 1000, { x: 1 });
    e.snapshotDelta();
    expect(e.tick(30_000)).toHaveLength(1);
    e.tick(99_999);
    expect(e.stats()).toMatchObject({ devices: 1, closedWindows: 1 });
    expect(e.tick(100_000)).toEqual([]);
    expect(e.stats()).toMatchObject({ devices: 0, closedWindows: 0, openWindows: 0, devicesEvicted: 1 });
    expect(e.dirty).toBe(true);
    expect(e.snapshotDelta()).toMatchObject({ devs: [], gone: ['d'] });
  });

  it('eviction in the same tick as the idle close still emits first', () => {
    const { e } = engine({ idleTimeoutMs: 30_000, evictAfterMs: 30_000 });
    e.add('d', B + 1000, { x: 1 });
    expect(e.tick(30_000)).toHaveLength(1);
    expect(e.stats().devices).toBe(0);
  });

  it('sorts a tick by window end, then device, then window name', () => {
    const { e } = engine({ windows: ['1m', '3m'], idleTimeoutMs: 1000 });
    e.add('b', B + 1000, { x: 1 });
    e.add('a', B + 61_000, { x: 1 });
    e.add('c', B + 1000, { x: 1 });
    e.add('a', B + 1000, { x: 1 });
    const order = e.tick(1000).map((o) => `${o.end - B}/${o.dev}/${o.win}`);
    expect(order).toEqual(['60000/a/1m', '60000/b/1m', '60000/c/1m', '120000/a/1m', '180000/a/3m', '180000/b/3m', '180000/c/3m']);
  });
});

describe('snapshot bookkeeping', () => {
  const cborEncoder = new Encoder({ useRecords: false } as ConstructorParameters<typeof Encoder>[0]);
  const cborDecoder = new Decoder({ useRecords: false, mapsAsObjects: true } as ConstructorParameters<typeof Decoder>[0]);

  it('dirty is set by changes only and cleared by a snapshot', () => {
    const { e } = engine({ idleTimeoutMs: 1000 });
    expect(e.dirty).toBe(false);
    e.add('d', B, { x: 1 });
    expect(e.dirty).toBe(true);
    e.snapshot();
    expect(e.dirty).toBe(false);
    e.tick(500);
    expect(e.dirty).toBe(false);
    e.tick(1000);
    expect(e.dirty).toBe(true);
    e.snapshotDelta();
    expect(e.dirty).toBe(false);
    e.flushAll();
    expect(e.dirty).toBe(false);
  });

  it('a delta holds only the devices that changed', () => {
    const { e } = engine();
    for (const d of ['a', 'b', 'c']) e.add(d, B, { x: 1 });
    expect(e.snapshotDelta().devs.map((d) => d[0])).toEqual(['a', 'b', 'c']);
    e.add('b', B + 1, { x: 1 });
    e.add('b', B + 2, { x: 1 });
    const delta = e.snapshotDelta();
    expect(delta.devs.map((d) => d[0])).toEqual(['b']);
    expect(delta.counters.readings).toBe(5);
    expect(e.snapshotDelta().devs).toEqual([]);
  });

  it('is plain data that survives JSON and CBOR, and restores to an equal engine', () => {
    const { e } = engine({ windows: ['1m', '5m/1m'] });
    e.add('a', B + 1000, { t: 21.5, door: true, m: 3 });
    e.add('a', B + 90_000, { t: -4.25, m: false });
    e.add('b', B + 5, { t: 1e-9 });
    const snap = e.snapshot();
    for (const back of [JSON.parse(JSON.stringify(snap)), cborDecoder.decode(cborEncoder.encode(snap))]) {
      expect(back).toEqual(snap);
      const r = WindowEngine.restore({ windows: ['1m', '5m/1m'] }, back);
      expect(r.snapshot()).toEqual(snap);
      expect(r.stats()).toEqual(e.stats());
      expect(r.dirty).toBe(false);
    }
  });

  it('restoring under a config without a window kind drops that kind; a new kind starts empty', () => {
    const { e } = engine({ windows: ['1m', '5m/1m'] });
    e.add('a', B + 1000, { x: 1 });
    const r = WindowEngine.restore({ windows: ['3m', '1m'] }, e.snapshot());
    expect(r.stats().openWindows).toBe(1);
    expect(brief(r.add('a', B + 2000, { x: 1 }).concat(r.flushAll()))).toEqual([['a', '1m', 0, 0, 2], ['a', '3m', 0, 0, 1]]);
  });

  it('restoring with a shorter grace discards what has expired', () => {
    const { e } = engine({ allowedLatenessMs: 0, graceMs: 60_000 });
    e.add('a', B + 1000, { x: 1 });
    e.add('a', B + 90_000, { x: 1 });
    expect(e.stats().closedWindows).toBe(1);
    expect(WindowEngine.restore({ allowedLatenessMs: 0, graceMs: 10_000 }, e.snapshot()).stats().closedWindows).toBe(0);
  });

  it.each<[string, unknown, string]>([
    ['another version', { v: 2, wins: [], counters: {}, devs: [] }, 'SLUICE_UNSUPPORTED_VERSION'],
    ['not a map', 'x', 'SLUICE_LOG_CORRUPT'],
    ['missing counters', { v: 1, wins: ['1m'], devs: [] }, 'SLUICE_LOG_CORRUPT'],
    ['bad device', { v: 1, wins: ['1m'], counters: zeroCounters(), devs: [['a', 1, 2]] }, 'SLUICE_LOG_CORRUPT'],
    ['kind out of range', { v: 1, wins: ['1m'], counters: zeroCounters(), devs: [['a', B, B, 0, [[1, B, -1, [['x', 1, 0, 0, 1, 1, 1, B, 1]]]]]] }, 'SLUICE_LOG_CORRUPT'],
    ['bad aggregate', { v: 1, wins: ['1m'], counters: zeroCounters(), devs: [['a', B, B, 0, [[0, B, -1, [['x', 0, 0, 0, 1, 1, 1, B, 1]]]]]] }, 'SLUICE_LOG_CORRUPT'],
    ['open window behind its watermark', { v: 1, wins: ['1m'], counters: zeroCounters(), devs: [['a', B + M, B + M, 0, [[0, B, -1, [['x', 1, 0, 0, 1, 1, 1, B, 1]]]]]] }, 'SLUICE_LOG_CORRUPT'],
    ['device twice', { v: 1, wins: ['1m'], counters: zeroCounters(), devs: [['a', B, B, 0, []], ['a', B, B, 0, []]] }, 'SLUICE_LOG_CORRUPT'],
  ])('restore refuses %s', (_what, snap, code) => {
    expect(codeOf(() => WindowEngine.restore({}, snap))).toBe(code);
  });
});

function zeroCounters(): Record<string, number> {
  return { readings: 0, windowsClosed: 0, windowsRevised: 0, lateDropped: 0, idleClosed: 0, devicesEvicted: 0 };
}

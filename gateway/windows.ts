/**
 * Event-time window engine: per device and window kind, tumbling or hopping windows aggregated by the
 * readings' event time, closed by a per-device watermark, revised by late data within a grace period.
 *
 * Rules (the reference model in test/unit/windows-model.test.ts states the same ones by brute force):
 *
 * - A reading at event time ts belongs, for each window kind (size, advance), to every window
 *   [start, start + size) with start a multiple of advance (epoch aligned) and start ≤ ts < start + size.
 * - Per device, watermark = max event time seen − allowedLatenessMs; it never goes back. A window is
 *   closed once watermark ≥ end: it is then emitted with rev 0. Its state is kept until
 *   watermark ≥ end + graceMs, then discarded.
 * - A reading for a closed window: while watermark < end + graceMs it is added and the window is
 *   re-emitted at once with rev + 1 (rev 0 if the window had closed empty); otherwise the (reading,
 *   window) pair is counted in lateDropped. A reading never closes a window it belongs to.
 * - tick(now): a device silent for idleTimeoutMs on the gateway clock has all its open windows closed,
 *   and its watermark raised to the latest end among them (so what follows is late data as above).
 *   A device silent for evictAfterMs is forgotten entirely.
 * - Every call returns its emissions sorted by (end, device, window name), so equal inputs give equal
 *   outputs, also across snapshot() / WindowEngine.restore().
 *
 * Concurrency: the engine is synchronous and owns no timers or I/O. The caller feeds it from one place
 * (the gateway log, in sequence order), calls tick() from its own timer, and takes snapshots between
 * calls. Cost: O(size / advance) map look-ups per reading and window kind, no allocation per reading
 * unless something is emitted; each window is created, closed and discarded once.
 */
import type { AggRecord, MetricAggregate } from '../protocols/batch.js';
import { SluiceError } from '../protocols/errors.js';
import type { Values } from '../protocols/payload.js';
import { MetricAcc, Win } from './windows-agg.js';
import { resolveWindowConfig, type ResolvedWindowConfig, type WindowConfig, type WindowDef } from './windows-config.js';
import {
  checkSnapshot,
  COUNTER_NAMES,
  SNAPSHOT_VERSION,
  type DeviceSnapshot,
  type WindowCounters,
  type WindowSnapshot,
  type WindowSnapshotDelta,
  type WinSnapshot,
} from './windows-snapshot.js';

export { parseWindowSpec, resolveWindowConfig, windowName, formatDuration } from './windows-config.js';
export type { WindowConfig, WindowSpec, WindowDef, ResolvedWindowConfig } from './windows-config.js';
export { mergeSnapshot, SNAPSHOT_VERSION } from './windows-snapshot.js';
export type { WindowCounters, WindowSnapshot, WindowSnapshotDelta, DeviceSnapshot, WinSnapshot } from './windows-snapshot.js';

/** An emitted window: an AggRecord before the gateway log assigns its `seq`. */
export type WindowOutput = Omit<AggRecord, 'seq'>;

export interface WindowStats extends WindowCounters {
  /** Devices with state. */
  devices: number;
  /** Windows not yet closed. */
  openWindows: number;
  /** Closed windows kept for their grace period. */
  closedWindows: number;
}

/**
 * A window's key in its device's map: its start in units of its kind's advance (starts are multiples
 * of it). A small integer, where a start in ms is past the small-integer range and was boxed on
 * every lookup.
 */
function winKey(start: number, advance: number): number {
  return start / advance;
}

interface DeviceState {
  readonly id: string;
  maxTs: number;
  wm: number;
  /** Gateway clock at the last add(). */
  lastSeen: number;
  /** Per window kind: winKey(start, advance) → window. */
  readonly wins: Map<number, Win>[];
  open: number;
  /** Smallest end among open windows; Infinity if none. */
  nextClose: number;
  /** Smallest end + grace among closed windows; Infinity if none. */
  nextExpire: number;
  /** Listed in the engine's dirty list. */
  dirty: boolean;
}

const EMPTY: readonly WindowOutput[] = Object.freeze([]);
const POOL_MAX = 4096;

function byEndDevWin(a: WindowOutput, b: WindowOutput): number {
  if (a.end !== b.end) return a.end - b.end;
  if (a.dev !== b.dev) return a.dev < b.dev ? -1 : 1;
  return a.win < b.win ? -1 : a.win > b.win ? 1 : 0;
}

function badReading(dev: string, message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_PAYLOAD', `windows: reading of device "${dev}": ${message}`);
}

export class WindowEngine {
  readonly config: ResolvedWindowConfig;
  private readonly defs: readonly WindowDef[];
  private readonly lateness: number;
  private readonly grace: number;
  private readonly devs = new Map<string, DeviceState>();
  private readonly c: WindowCounters = { readings: 0, windowsClosed: 0, windowsRevised: 0, lateDropped: 0, idleClosed: 0, devicesEvicted: 0 };
  private openTotal = 0;
  private winTotal = 0;
  private changed = false;
  /** Ids of devices changed (or forgotten) since the last snapshot; may repeat an id. */
  private dirtyIds: string[] = [];
  private readonly winPool: Win[] = [];
  private readonly accPool: MetricAcc[] = [];

  constructor(config: WindowConfig = {}) {
    this.config = resolveWindowConfig(config);
    this.defs = this.config.windows;
    this.lateness = this.config.allowedLatenessMs;
    this.grace = this.config.graceMs;
  }

  /**
   * Feed one reading of device `dev` at event time `ts` (ms). Returns the windows this closed (the
   * device's watermark passed their end) or revised (late data within grace), sorted. Throws
   * SLUICE_BAD_PAYLOAD, changing nothing, for a non-finite or unsafe ts or a value that is neither a
   * finite number nor a boolean. A reading without values only moves the watermark.
   */
  add(dev: string, ts: number, vals: Values): readonly WindowOutput[] {
    if (!(ts >= -Number.MAX_SAFE_INTEGER && ts <= Number.MAX_SAFE_INTEGER)) throw badReading(dev, `event time ${ts} is not a finite ms count`);
    ts += 0; // -0 → 0: keeps snapshots JSON-exact
    let metrics = 0;
    for (const k in vals) {
      const v = vals[k];
      if (typeof v !== 'boolean' && !(typeof v === 'number' && Number.isFinite(v))) throw badReading(dev, `metric "${k}" is not a finite number or boolean`);
      if (k === '__proto__') throw badReading(dev, 'metric name "__proto__" is reserved');
      metrics++;
    }
    let d = this.devs.get(dev);
    if (d === undefined) d = this.newDevice(dev, ts);
    this.c.readings++;
    d.lastSeen = this.config.now();
    this.touch(d);
    if (ts > d.maxTs) {
      d.maxTs = ts;
      if (ts - this.lateness > d.wm) d.wm = ts - this.lateness;
    }
    let out: WindowOutput[] | undefined;
    if (metrics > 0) out = this.assign(d, ts, vals, out);
    if (d.wm >= d.nextClose || d.wm >= d.nextExpire) out = this.sweep(d, false, out);
    return this.finish(out);
  }

  /**
   * Call from the gateway's timer. Closes the open windows of devices silent for idleTimeoutMs
   * (gateway clock, `now` defaults to config.now()) and forgets devices silent for evictAfterMs.
   */
  tick(now: number = this.config.now()): readonly WindowOutput[] {
    let out: WindowOutput[] | undefined;
    const { idleTimeoutMs, evictAfterMs } = this.config;
    for (const d of this.devs.values()) {
      const silent = now - d.lastSeen;
      if (d.open > 0 && silent >= idleTimeoutMs) out = this.closeAll(d, true, out);
      if (silent >= evictAfterMs) this.evict(d);
    }
    return this.finish(out);
  }

  /** Close every open window now, as an idle timeout would (without counting idleClosed). */
  flushAll(): readonly WindowOutput[] {
    let out: WindowOutput[] | undefined;
    for (const d of this.devs.values()) if (d.open > 0) out = this.closeAll(d, false, out);
    return this.finish(out);
  }

  /** A copy of the counters. */
  counters(): WindowCounters {
    return { ...this.c };
  }

  stats(): WindowStats {
    return { ...this.c, devices: this.devs.size, openWindows: this.openTotal, closedWindows: this.winTotal - this.openTotal };
  }

  /** Current watermark of a device (−Infinity for an unknown device). */
  watermark(dev: string): number {
    return this.devs.get(dev)?.wm ?? -Infinity;
  }

  /** True when state changed since the last snapshot() or snapshotDelta(). */
  get dirty(): boolean {
    return this.changed;
  }

  /** All state, as plain data; marks the engine clean. See windows-snapshot.ts for the layout. */
  snapshot(): WindowSnapshot {
    const ids = [...this.devs.keys()].sort();
    const devs = ids.map((id) => this.saveDevice(this.devs.get(id) as DeviceState));
    this.markClean();
    return { v: SNAPSHOT_VERSION, wins: this.defs.map((w) => w.name), counters: this.counters(), devs };
  }

  /** Only the devices changed or forgotten since the last snapshot() or snapshotDelta(); marks clean. */
  snapshotDelta(): WindowSnapshotDelta {
    const ids = [...new Set(this.dirtyIds)].sort();
    const devs: DeviceSnapshot[] = [];
    const gone: string[] = [];
    for (const id of ids) {
      const d = this.devs.get(id);
      if (d === undefined) gone.push(id);
      else devs.push(this.saveDevice(d));
    }
    this.markClean();
    return { v: SNAPSHOT_VERSION, wins: this.defs.map((w) => w.name), counters: this.counters(), devs, gone };
  }

  /**
   * Rebuild an engine from snapshot() output (after a JSON or CBOR round trip). Windows of kinds no
   * longer configured are dropped; new kinds start empty. Throws SLUICE_UNSUPPORTED_VERSION or
   * SLUICE_LOG_CORRUPT for a snapshot that is not one.
   */
  static restore(config: WindowConfig, snapshot: unknown): WindowEngine {
    const snap = checkSnapshot(snapshot);
    const e = new WindowEngine(config);
    const kindOf = snap.wins.map((name) => e.defs.findIndex((w) => w.name === name));
    for (const k of COUNTER_NAMES) e.c[k] = snap.counters[k];
    for (const [id, maxTs, wm, lastSeen, wins] of snap.devs) {
      if (e.devs.has(id)) throw new SluiceError('SLUICE_LOG_CORRUPT', `window snapshot: device "${id}" appears twice`);
      const d = e.newDevice(id, maxTs);
      d.wm = wm;
      d.lastSeen = lastSeen;
      for (const [snapKind, start, rev, accs] of wins) {
        const kind = kindOf[snapKind];
        if (kind < 0) continue;
        const end = start + e.defs[kind].size;
        if (rev < 0 ? end <= wm : end > wm) {
          throw new SluiceError('SLUICE_LOG_CORRUPT', `window snapshot: device "${id}" window ${snap.wins[snapKind]}@${start} is ${rev < 0 ? 'open' : 'closed'} against its watermark`);
        }
        const w = e.newWin(start, end);
        w.rev = rev;
        for (const a of accs) {
          const acc = e.newAcc();
          acc.load(a);
          w.accs.set(a[0], acc);
        }
        d.wins[kind].set(winKey(start, e.defs[kind].advance), w);
        if (rev < 0) {
          d.open++;
          e.openTotal++;
          if (end < d.nextClose) d.nextClose = end;
        } else if (end + e.grace < d.nextExpire) d.nextExpire = end + e.grace;
      }
      // A shorter grace than when the snapshot was taken expires windows now; nothing can close here.
      if (d.wm >= d.nextExpire) e.sweep(d, false, undefined);
      d.dirty = false;
    }
    e.dirtyIds = [];
    e.changed = false;
    return e;
  }

  // ---- internals ----

  private finish(out: WindowOutput[] | undefined): readonly WindowOutput[] {
    if (out === undefined) return EMPTY;
    if (out.length > 1) out.sort(byEndDevWin);
    return out;
  }

  private touch(d: DeviceState): void {
    this.changed = true;
    if (!d.dirty) {
      d.dirty = true;
      this.dirtyIds.push(d.id);
    }
  }

  private markClean(): void {
    for (const id of this.dirtyIds) {
      const d = this.devs.get(id);
      if (d !== undefined) d.dirty = false;
    }
    this.dirtyIds = [];
    this.changed = false;
  }

  private newDevice(id: string, ts: number): DeviceState {
    const d: DeviceState = {
      id,
      maxTs: ts,
      wm: ts - this.lateness,
      lastSeen: 0,
      wins: this.defs.map(() => new Map<number, Win>()),
      open: 0,
      nextClose: Infinity,
      nextExpire: Infinity,
      dirty: false,
    };
    this.devs.set(id, d);
    return d;
  }

  private newWin(start: number, end: number): Win {
    const w = this.winPool.pop() ?? new Win();
    w.start = start;
    w.end = end;
    w.rev = -1;
    this.winTotal++;
    return w;
  }

  private newAcc(): MetricAcc {
    return this.accPool.pop() ?? new MetricAcc();
  }

  private release(w: Win): void {
    this.winTotal--;
    for (const acc of w.accs.values()) {
      if (this.accPool.length < POOL_MAX) {
        acc.reset();
        this.accPool.push(acc);
      }
    }
    w.accs.clear();
    if (this.winPool.length < POOL_MAX) this.winPool.push(w);
  }

  /** Put the reading into each window it belongs to. */
  private assign(d: DeviceState, ts: number, vals: Values, out: WindowOutput[] | undefined): WindowOutput[] | undefined {
    const wm = d.wm;
    for (let kind = 0; kind < this.defs.length; kind++) {
      const { size, advance } = this.defs[kind];
      const map = d.wins[kind];
      let r = ts % advance;
      if (r < 0) r += advance;
      for (let start = ts - r; start + size > ts; start -= advance) {
        const end = start + size;
        const key = winKey(start, advance);
        let w = map.get(key);
        if (end > wm) {
          if (w === undefined) {
            w = this.newWin(start, end);
            map.set(key, w);
            d.open++;
            this.openTotal++;
            if (end < d.nextClose) d.nextClose = end;
          }
          this.addValues(w, ts, vals);
          continue;
        }
        // The window is closed (end ≤ wm); ts < end means this reading did not close it.
        if (end + this.grace <= wm) {
          this.c.lateDropped++;
          continue;
        }
        if (w === undefined) {
          // Closed while empty: first emission comes now, as rev 0.
          w = this.newWin(start, end);
          map.set(key, w);
          if (end + this.grace < d.nextExpire) d.nextExpire = end + this.grace;
        }
        w.rev++;
        if (w.rev === 0) this.c.windowsClosed++;
        else this.c.windowsRevised++;
        this.addValues(w, ts, vals);
        (out ??= []).push(this.emit(d, kind, w));
      }
    }
    return out;
  }

  private addValues(w: Win, ts: number, vals: Values): void {
    const accs = w.accs;
    for (const k in vals) {
      let acc = accs.get(k);
      if (acc === undefined) {
        acc = this.newAcc();
        accs.set(k, acc);
      }
      const v = vals[k];
      if (typeof v === 'number') acc.addNumber(ts, v + 0);
      else acc.addBoolean(ts, v);
    }
  }

  /** Emit open windows the watermark has passed, discard closed ones past grace, recompute the bounds. */
  private sweep(d: DeviceState, idle: boolean, out: WindowOutput[] | undefined): WindowOutput[] | undefined {
    const wm = d.wm;
    const grace = this.grace;
    let nextClose = Infinity;
    let nextExpire = Infinity;
    for (let kind = 0; kind < this.defs.length; kind++) {
      const map = d.wins[kind];
      for (const w of map.values()) {
        if (w.rev < 0) {
          if (w.end > wm) {
            if (w.end < nextClose) nextClose = w.end;
            continue;
          }
          w.rev = 0;
          d.open--;
          this.openTotal--;
          this.c.windowsClosed++;
          if (idle) this.c.idleClosed++;
          (out ??= []).push(this.emit(d, kind, w));
        }
        if (w.end + grace <= wm) {
          map.delete(winKey(w.start, this.defs[kind].advance));
          this.release(w);
        } else if (w.end + grace < nextExpire) nextExpire = w.end + grace;
      }
    }
    d.nextClose = nextClose;
    d.nextExpire = nextExpire;
    return out;
  }

  /** Idle close (or flush): raise the watermark to the latest open end, then sweep. */
  private closeAll(d: DeviceState, idle: boolean, out: WindowOutput[] | undefined): WindowOutput[] | undefined {
    let maxEnd = -Infinity;
    for (const map of d.wins) for (const w of map.values()) if (w.rev < 0 && w.end > maxEnd) maxEnd = w.end;
    if (maxEnd > d.wm) d.wm = maxEnd;
    this.touch(d);
    return this.sweep(d, idle, out);
  }

  private evict(d: DeviceState): void {
    for (const map of d.wins) {
      for (const w of map.values()) {
        if (w.rev < 0) {
          d.open--;
          this.openTotal--;
        }
        this.release(w);
      }
      map.clear();
    }
    this.devs.delete(d.id);
    this.c.devicesEvicted++;
    this.changed = true;
    this.dirtyIds.push(d.id);
  }

  private emit(d: DeviceState, kind: number, w: Win): WindowOutput {
    const aggs: Record<string, MetricAggregate> = {};
    for (const [k, acc] of w.accs) aggs[k] = acc.toAggregate();
    return { dev: d.id, win: this.defs[kind].name, start: w.start, end: w.end, rev: w.rev, aggs };
  }

  private saveDevice(d: DeviceState): DeviceSnapshot {
    const wins: WinSnapshot[] = [];
    for (let kind = 0; kind < d.wins.length; kind++) {
      for (const w of [...d.wins[kind].values()].sort((a, b) => a.start - b.start)) {
        const accs = [];
        for (const [k, acc] of w.accs) accs.push(acc.save(k));
        wins.push([kind, w.start, w.rev, accs]);
      }
    }
    return [d.id, d.maxTs, d.wm, d.lastSeen, wins];
  }
}

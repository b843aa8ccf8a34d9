/**
 * Durable form of the window engine's state (gateway/windows.ts).
 *
 * A snapshot is plain data (arrays, strings, finite numbers, booleans), so it survives JSON and CBOR
 * unchanged. Layout, version 1:
 *
 *   { v: 1,
 *     wins: ["1m", "5m_1m"],                       window names; a window's kind is an index in this list
 *     counters: { readings, windowsClosed, ... },
 *     devs: [ [id, maxTs, watermark, lastSeen, [ [kind, start, rev, [AccSnapshot...]] ... ]] ... ] }
 *
 * devs are sorted by id and each device's windows by (kind, start), so equal states give equal
 * snapshots. rev is -1 for an open window. A delta (snapshotDelta) has the same fields, with `devs`
 * holding only the devices changed since the previous snapshot or delta and `gone` the ids of devices
 * forgotten since; mergeSnapshot folds deltas into a full snapshot. To store state per device, keep
 * each DeviceSnapshot under its own key and { v, wins, counters } under another.
 */
import { SluiceError } from '../protocols/errors.js';
import type { AccSnapshot } from './windows-agg.js';

export const SNAPSHOT_VERSION = 1;

export interface WindowCounters {
  /** Readings given to add(). */
  readings: number;
  /** Windows emitted for the first time (rev 0), by watermark, idle timeout, flushAll, or late data. */
  windowsClosed: number;
  /** Re-emissions of closed windows corrected by late data (rev ≥ 1). */
  windowsRevised: number;
  /** (reading, window) pairs refused because the window's grace had expired. */
  lateDropped: number;
  /** Of windowsClosed, those closed by the idle timeout. */
  idleClosed: number;
  /** Devices forgotten after evictAfterMs of silence. */
  devicesEvicted: number;
}

export const COUNTER_NAMES: ReadonlyArray<keyof WindowCounters> = [
  'readings', 'windowsClosed', 'windowsRevised', 'lateDropped', 'idleClosed', 'devicesEvicted',
];

/** [kind, start, rev, accs]. */
export type WinSnapshot = [number, number, number, AccSnapshot[]];
/** [id, maxTs, watermark, lastSeen, windows]. */
export type DeviceSnapshot = [string, number, number, number, WinSnapshot[]];

export interface WindowSnapshot {
  v: number;
  wins: string[];
  counters: WindowCounters;
  devs: DeviceSnapshot[];
}

export interface WindowSnapshotDelta extends WindowSnapshot {
  /** Devices forgotten since the previous snapshot or delta. */
  gone: string[];
}

function corrupt(message: string): SluiceError {
  return new SluiceError('SLUICE_LOG_CORRUPT', `window snapshot: ${message}`);
}

const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** Check the shape of a decoded snapshot; throws SLUICE_UNSUPPORTED_VERSION or SLUICE_LOG_CORRUPT. */
export function checkSnapshot(x: unknown): WindowSnapshot {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw corrupt('not a map');
  const s = x as Record<string, unknown>;
  if (s.v !== SNAPSHOT_VERSION) {
    throw new SluiceError('SLUICE_UNSUPPORTED_VERSION', `window snapshot version ${String(s.v)} is not supported (this gateway reads version ${SNAPSHOT_VERSION})`);
  }
  if (!Array.isArray(s.wins) || !s.wins.every((n) => typeof n === 'string')) throw corrupt('"wins" must be a list of names');
  const c = s.counters as Record<string, unknown> | null;
  if (c === null || typeof c !== 'object') throw corrupt('"counters" missing');
  for (const k of COUNTER_NAMES) if (!isNum(c[k]) || c[k] < 0) throw corrupt(`counter ${k} must be a non-negative number`);
  if (!Array.isArray(s.devs)) throw corrupt('"devs" must be a list');
  const kinds = s.wins.length;
  for (const d of s.devs as unknown[]) {
    if (!Array.isArray(d) || d.length !== 5 || typeof d[0] !== 'string' || !isNum(d[1]) || !isNum(d[2]) || !isNum(d[3]) || !Array.isArray(d[4])) {
      throw corrupt('a device entry must be [id, maxTs, watermark, lastSeen, windows]');
    }
    for (const w of d[4] as unknown[]) {
      if (!Array.isArray(w) || w.length !== 4 || !Number.isInteger(w[0]) || w[0] < 0 || w[0] >= kinds || !isNum(w[1]) || !Number.isInteger(w[2]) || w[2] < -1 || !Array.isArray(w[3]) || w[3].length === 0) {
        throw corrupt(`device "${d[0]}": a window entry must be [kind, start, rev, accs]`);
      }
      for (const a of w[3] as unknown[]) {
        if (!Array.isArray(a) || a.length !== 9 || typeof a[0] !== 'string' || a[0] === '__proto__' || !a.slice(1, 8).every(isNum) || !(a[1] >= 1) || !(isNum(a[8]) || typeof a[8] === 'boolean')) {
          throw corrupt(`device "${d[0]}": bad metric aggregate`);
        }
      }
    }
  }
  return s as unknown as WindowSnapshot;
}

/** Fold a delta into a full snapshot (base undefined = empty). Pure: neither argument is changed. */
export function mergeSnapshot(base: WindowSnapshot | undefined, delta: WindowSnapshotDelta): WindowSnapshot {
  if (base !== undefined && base.wins.join('\n') !== delta.wins.join('\n')) {
    throw new SluiceError('SLUICE_BAD_CONFIG', `window snapshot: delta windows [${delta.wins}] differ from base [${base.wins}]`);
  }
  const byId = new Map<string, DeviceSnapshot>();
  for (const d of base?.devs ?? []) byId.set(d[0], d);
  for (const id of delta.gone) byId.delete(id);
  for (const d of delta.devs) byId.set(d[0], d);
  const devs = [...byId.values()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { v: delta.v, wins: [...delta.wins], counters: { ...delta.counters }, devs };
}

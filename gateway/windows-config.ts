/**
 * Configuration of the event-time window engine (gateway/windows.ts): the typed schema with its
 * defaults, window specs ("1m", "5m/1m", "5m every 1m"), and window names ("1m", "5m_1m").
 *
 * Every bad value fails with SLUICE_BAD_CONFIG and a message naming the key.
 */
import { SluiceError } from '../protocols/errors.js';
import { parseDuration } from '../protocols/units.js';

/** One window kind. Windows are aligned to the epoch: starts are multiples of `advance`. */
export interface WindowSpec {
  /** Window length in ms; a positive integer. */
  size: number;
  /** Distance between the starts of consecutive windows in ms, 1..size. Default: `size` (tumbling). */
  advance?: number;
}

export interface WindowConfig {
  /** Window kinds, as specs or strings for parseWindowSpec. Default: ['1m'] (one 1-minute tumbling window). */
  windows?: Array<WindowSpec | string>;
  /** Event-time ms a device's readings may arrive out of order before its windows close. Default 10 000. */
  allowedLatenessMs?: number;
  /**
   * Event-time ms after a window closed during which late readings still revise it (re-emitted with
   * rev + 1); measured as device watermark − window end. Later readings are counted in lateDropped.
   * Default 60 000.
   */
  graceMs?: number;
  /**
   * Gateway-clock ms of silence after which a device's open windows are closed anyway (by tick()).
   * Default: 2 × the largest window size + allowedLatenessMs.
   */
  idleTimeoutMs?: number;
  /**
   * Gateway-clock ms of silence after which all state of a device (watermark and grace-kept windows)
   * is forgotten; must be ≥ idleTimeoutMs. Infinity keeps devices forever. Default 24 h.
   */
  evictAfterMs?: number;
  /** Gateway clock in ms; read once per add(). Default: Date.now (looked up on each call, so fake timers apply). */
  now?: () => number;
}

/** A validated window kind. */
export interface WindowDef {
  /** "1m" for tumbling, "5m_1m" for hopping (size_advance); the InfluxDB measurement suffix. */
  readonly name: string;
  readonly size: number;
  readonly advance: number;
}

export interface ResolvedWindowConfig {
  readonly windows: readonly WindowDef[];
  readonly allowedLatenessMs: number;
  readonly graceMs: number;
  readonly idleTimeoutMs: number;
  readonly evictAfterMs: number;
  readonly now: () => number;
}

export const DEFAULT_WINDOWS: readonly string[] = ['1m'];
export const DEFAULT_ALLOWED_LATENESS_MS = 10_000;
export const DEFAULT_GRACE_MS = 60_000;
export const DEFAULT_EVICT_AFTER_MS = 24 * 3_600_000;
/** Most windows one reading may fall into (size / advance): bounds the per-reading cost. */
export const MAX_WINDOW_OVERLAP = 256;

const CONFIG_KEYS = new Set(['windows', 'allowedLatenessMs', 'graceMs', 'idleTimeoutMs', 'evictAfterMs', 'now']);
const NAME_RE = /^[0-9a-z_]{1,32}$/;

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_CONFIG', message);
}

/**
 * "1m" → tumbling { size: 60000, advance: 60000 }; "5m/1m", "5m every 1m" and "5m_1m" → hopping
 * { size: 300000, advance: 60000 }. Durations as in parseDuration ("500ms", "30s", "1h", "90000").
 */
export function parseWindowSpec(spec: string, what = 'window'): Required<WindowSpec> {
  const parts = spec.trim().split(/\s+every\s+|\s*\/\s*|_/i);
  if (parts.length > 2 || parts[0] === '') {
    throw bad(`${what}: "${spec}" is not a window spec (examples: 1m, 5m/1m, 5m every 1m)`);
  }
  const size = parseDuration(parts[0], `${what} size`);
  const advance = parts.length === 2 ? parseDuration(parts[1], `${what} advance`) : size;
  return checkSpec(size, advance, what);
}

function checkSpec(size: unknown, advance: unknown, what: string): Required<WindowSpec> {
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) {
    throw bad(`${what}.size: must be a positive whole number of ms, got ${String(size)}`);
  }
  if (typeof advance !== 'number' || !Number.isSafeInteger(advance) || advance <= 0) {
    throw bad(`${what}.advance: must be a positive whole number of ms, got ${String(advance)}`);
  }
  if (advance > size) throw bad(`${what}.advance: ${advance} ms is larger than the window size ${size} ms (gaps between windows)`);
  if (Math.ceil(size / advance) > MAX_WINDOW_OVERLAP) {
    throw bad(`${what}: size / advance is ${Math.ceil(size / advance)}, more than ${MAX_WINDOW_OVERLAP} windows per reading`);
  }
  return { size, advance };
}

const UNITS: Array<[number, string]> = [[86_400_000, 'd'], [3_600_000, 'h'], [60_000, 'm'], [1000, 's'], [1, 'ms']];

/** 60000 → "1m", 90000 → "1m30s", 1500 → "1s500ms". */
export function formatDuration(ms: number): string {
  let rest = ms;
  let out = '';
  for (const [unit, suffix] of UNITS) {
    const q = Math.floor(rest / unit);
    if (q > 0) {
      out += `${q}${suffix}`;
      rest -= q * unit;
    }
  }
  return out === '' ? '0ms' : out;
}

/** "1m" for a tumbling window, "5m_1m" for a hopping one. */
export function windowName(spec: WindowSpec): string {
  const advance = spec.advance ?? spec.size;
  return advance === spec.size ? formatDuration(spec.size) : `${formatDuration(spec.size)}_${formatDuration(advance)}`;
}

function checkMs(v: unknown, key: string, min: number, allowInfinity = false): number {
  if (typeof v !== 'number' || Number.isNaN(v) || v < min || (!allowInfinity && !Number.isFinite(v))) {
    throw bad(`${key}: must be a number of ms ≥ ${min}${allowInfinity ? ' (or Infinity)' : ''}, got ${String(v)}`);
  }
  return v;
}

/** Validate a config and fill in defaults. */
export function resolveWindowConfig(config: WindowConfig = {}): ResolvedWindowConfig {
  if (config === null || typeof config !== 'object') throw bad('windows config: must be an object');
  for (const key of Object.keys(config)) {
    if (!CONFIG_KEYS.has(key)) throw bad(`windows config: unknown key "${key}" (allowed: ${[...CONFIG_KEYS].join(', ')})`);
  }
  const specs = config.windows ?? DEFAULT_WINDOWS;
  if (!Array.isArray(specs) || specs.length === 0) throw bad('windows: must be a non-empty list of window specs');
  const windows: WindowDef[] = [];
  const names = new Set<string>();
  specs.forEach((s, i) => {
    const what = `windows[${i}]`;
    let spec: Required<WindowSpec>;
    if (typeof s === 'string') spec = parseWindowSpec(s, what);
    else if (s !== null && typeof s === 'object') {
      for (const key of Object.keys(s)) if (key !== 'size' && key !== 'advance') throw bad(`${what}: unknown key "${key}" (allowed: size, advance)`);
      spec = checkSpec(s.size, s.advance ?? s.size, what);
    } else throw bad(`${what}: must be a string like "5m/1m" or { size, advance }`);
    const name = windowName(spec);
    if (!NAME_RE.test(name)) throw bad(`${what}: window name "${name}" is longer than 32 characters`);
    if (names.has(name)) throw bad(`${what}: window "${name}" is listed twice`);
    names.add(name);
    windows.push(Object.freeze({ name, size: spec.size, advance: spec.advance }));
  });
  const allowedLatenessMs = checkMs(config.allowedLatenessMs ?? DEFAULT_ALLOWED_LATENESS_MS, 'allowedLatenessMs', 0);
  const graceMs = checkMs(config.graceMs ?? DEFAULT_GRACE_MS, 'graceMs', 0);
  const largest = Math.max(...windows.map((w) => w.size));
  const idleTimeoutMs = checkMs(config.idleTimeoutMs ?? 2 * largest + allowedLatenessMs, 'idleTimeoutMs', 1);
  const evictAfterMs = checkMs(config.evictAfterMs ?? Math.max(DEFAULT_EVICT_AFTER_MS, idleTimeoutMs), 'evictAfterMs', idleTimeoutMs, true);
  if (config.now !== undefined && typeof config.now !== 'function') throw bad('now: must be a function returning ms');
  const now = config.now ?? (() => Date.now());
  return Object.freeze({ windows: Object.freeze(windows), allowedLatenessMs, graceMs, idleTimeoutMs, evictAfterMs, now });
}

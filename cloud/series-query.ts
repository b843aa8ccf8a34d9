/**
 * The read side: query-string parameters of GET /api/v1/series and /api/v1/devices → InfluxQL, and
 * InfluxQL results → JSON.
 *
 *   device, metric   required; each must match [A-Za-z0-9_.-]{1,64}
 *   from, to         ms epoch ("1732200000000"), ISO date ("2024-11-21T14:40:00Z"), relative
 *                    ("-1h", "now-30m") or "now"; default from=-1h, to=now; both inclusive to the ms
 *   every, fn        bucket the series: GROUP BY time(every), fn ∈ mean|min|max|last|count|sum
 *   window           read the gateway's window aggregates `telemetry_<window>`, field
 *                    `<metric>_<fn or mean>`; with `every`, buckets are combined with a matching function
 *   limit            most points returned (default 10000, at most 100000)
 *
 * Guarantees: no user input reaches InfluxQL unvalidated; names are checked against strict patterns
 * AND quoted (quoteIdent/quoteString); times and durations are rendered as integers. Every defect is a
 * SluiceError('SLUICE_BAD_QUERY') naming the parameter.
 */
import { SluiceError } from '../protocols/errors.js';
import { parseDuration } from '../protocols/units.js';
import { quoteIdent, quoteString, type InfluxSeries } from './influxql.js';
import { aggMeasurement, msToNs, RAW_MEASUREMENT } from './points.js';

export const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
export const WINDOW_RE = /^[0-9a-z_]{1,32}$/;
export const SERIES_FNS = ['mean', 'min', 'max', 'last', 'count', 'sum'] as const;
export type SeriesFn = (typeof SERIES_FNS)[number];
export const DEFAULT_LIMIT = 10_000;
export const MAX_LIMIT = 100_000;
const MAX_BUCKETS = 100_000;

export interface SeriesQuery {
  device: string;
  metric: string;
  from: number;
  to: number;
  every?: number;
  fn?: SeriesFn;
  window?: string;
  limit: number;
}

export interface SeriesPoint {
  t: number;
  v: number | boolean;
}

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_QUERY', message);
}

/** "now", "-1h", "now-1h", ms epoch, or an ISO date → ms since the epoch. */
export function parseTime(input: string, param: string, now: number): number {
  const s = input.trim();
  if (s === 'now') return now;
  if (/^\d{1,16}$/.test(s)) return Number(s);
  const rel = /^(?:now)?-(.+)$/.exec(s);
  if (rel) {
    try {
      return now - parseDuration(rel[1], param);
    } catch {
      throw bad(`${param}: "${s.slice(0, 40)}" is not a relative time (examples: -1h, now-30m)`);
    }
  }
  if (/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(s)) {
    const t = Date.parse(s);
    if (!Number.isNaN(t)) return t;
  }
  throw bad(`${param}: "${s.slice(0, 40)}" is not a time (use ms since the epoch, an ISO date, -1h or now)`);
}

function name(params: URLSearchParams, key: string): string {
  const v = params.get(key);
  if (v === null || v === '') throw bad(`${key} is required`);
  if (!NAME_RE.test(v)) throw bad(`${key} must match [A-Za-z0-9_.-]{1,64}`);
  return v;
}

/** Everything of a series query but the device and metric names. */
export type SeriesOptions = Omit<SeriesQuery, 'device' | 'metric'>;

export function parseSeriesQuery(params: URLSearchParams, now = Date.now()): SeriesQuery {
  const device = name(params, 'device');
  const metric = name(params, 'metric');
  return { device, metric, ...parseSeriesOptions(params, now) };
}

/** from, to, every, fn, window, limit (shared by the single- and multi-series forms). */
export function parseSeriesOptions(params: URLSearchParams, now = Date.now()): SeriesOptions {
  const from = parseTime(params.get('from') ?? '-1h', 'from', now);
  const to = parseTime(params.get('to') ?? 'now', 'to', now);
  if (from > to) throw bad('from must not be later than to');
  const q: SeriesOptions = { from, to, limit: DEFAULT_LIMIT };
  const fn = params.get('fn');
  if (fn !== null) {
    if (!(SERIES_FNS as readonly string[]).includes(fn)) throw bad(`fn must be one of ${SERIES_FNS.join(', ')}`);
    q.fn = fn as SeriesFn;
  }
  const every = params.get('every');
  if (every !== null) {
    let ms: number;
    try {
      ms = parseDuration(every, 'every');
    } catch {
      throw bad(`every: "${every.slice(0, 40)}" is not a duration (examples: 10s, 1m, 1h)`);
    }
    if (!Number.isInteger(ms) || ms < 1) throw bad('every must be a whole number of milliseconds, at least 1ms');
    if ((to - from) / ms > MAX_BUCKETS) throw bad(`every ${every} over this time range makes more than ${MAX_BUCKETS} buckets`);
    q.every = ms;
    q.fn ??= 'mean';
  }
  const window = params.get('window');
  if (window !== null) {
    if (!WINDOW_RE.test(window)) throw bad('window must be a window name like 1m or 5m_1m');
    q.window = window;
  }
  if (q.fn !== undefined && q.every === undefined && q.window === undefined) throw bad('fn needs every (or window)');
  const limit = params.get('limit');
  if (limit !== null) {
    if (!/^\d{1,7}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_LIMIT) throw bad(`limit must be an integer from 1 to ${MAX_LIMIT}`);
    q.limit = Number(limit);
  }
  return q;
}

/** How buckets of a pre-aggregated field combine: counts add up, the others keep their function. */
export const REBUCKET: Record<SeriesFn, string> = { mean: 'mean', min: 'min', max: 'max', last: 'last', count: 'sum', sum: 'sum' };

export function seriesInfluxQL(q: SeriesQuery): string {
  let measurement = RAW_MEASUREMENT;
  let field = q.metric;
  let fn = q.fn;
  if (q.window !== undefined) {
    measurement = aggMeasurement(q.window);
    field = `${q.metric}_${q.fn ?? 'mean'}`;
    fn = q.fn === undefined ? 'mean' : (REBUCKET[q.fn] as SeriesFn);
  }
  const select = q.every === undefined ? quoteIdent(field) : `${fn}(${quoteIdent(field)})`;
  const where = `${quoteIdent('device')} = ${quoteString(q.device)} AND time >= ${msToNs(q.from)} AND time <= ${msToNs(q.to) + 999_999n}`;
  const group = q.every === undefined ? '' : ` GROUP BY time(${q.every}ms) fill(none)`;
  return `SELECT ${select} AS ${quoteIdent('v')} FROM ${quoteIdent(measurement)} WHERE ${where}${group} ORDER BY time ASC LIMIT ${q.limit}`;
}

export function seriesPoints(series: InfluxSeries[]): SeriesPoint[] {
  const out: SeriesPoint[] = [];
  for (const s of series) {
    const ti = s.columns.indexOf('time');
    const vi = s.columns.indexOf('v');
    for (const row of s.values) {
      const t = row[ti];
      const v = row[vi];
      if (typeof t === 'number' && (typeof v === 'number' || typeof v === 'boolean')) out.push({ t, v });
    }
  }
  return out.sort((a, b) => a.t - b.t);
}

/** Each device's newest raw point: its time, its fields, and the gateway that sent it. */
export function devicesInfluxQL(): string {
  return `SELECT *::field, ${quoteIdent('gateway')}::tag FROM ${quoteIdent(RAW_MEASUREMENT)} GROUP BY ${quoteIdent('device')} ORDER BY time DESC LIMIT 1`;
}

export interface DeviceInfo {
  device: string;
  gateway?: string;
  lastSeen: number;
  /** With `values=1`: the newest value of each metric (see devicesLatestInfluxQL). */
  values?: Record<string, number | boolean>;
}

export function devicesFromSeries(series: InfluxSeries[]): DeviceInfo[] {
  const out: DeviceInfo[] = [];
  for (const s of series) {
    const device = s.tags?.device;
    const row = s.values[0];
    if (!device || !row) continue;
    const t = row[s.columns.indexOf('time')];
    const gw = row[s.columns.indexOf('gateway')];
    if (typeof t !== 'number') continue;
    out.push({ device, lastSeen: t, ...(typeof gw === 'string' ? { gateway: gw } : {}) });
  }
  return out.sort((a, b) => a.device.localeCompare(b.device));
}

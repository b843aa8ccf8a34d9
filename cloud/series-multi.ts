/**
 * GET /api/v1/series for several devices and/or metrics at once, and the latest values of
 * GET /api/v1/devices?values=1.
 *
 *   device=a,b&metric=x,y   (or repeated: device=a&device=b) → one InfluxQL statement, one series per
 *                           (device, metric) pair in request order, empty ones included:
 *                           { from, to, [every, fn], [window], series: [{ device, metric, points }] }
 *   one device and one metric keep the single-series response { device, metric, …, points }.
 *   Other parameters as in series-query.ts; `limit` is per device. At most 100 devices, 20 metrics.
 *
 * Guarantees as in series-query.ts: every name is checked against NAME_RE and quoted; a bad one is a
 * SluiceError('SLUICE_BAD_QUERY') naming the parameter, so nothing hostile reaches InfluxDB. The
 * statement aliases fields as v0, v1, … so a metric's name never has to be a valid column name.
 */
import { SluiceError } from '../protocols/errors.js';
import { quoteIdent, quoteString, type InfluxSeries } from './influxql.js';
import { aggMeasurement, msToNs, RAW_MEASUREMENT } from './points.js';
import { NAME_RE, parseSeriesOptions, parseSeriesQuery, REBUCKET, type DeviceInfo, type SeriesFn, type SeriesOptions, type SeriesPoint, type SeriesQuery } from './series-query.js';

export const MAX_DEVICES = 100;
export const MAX_METRICS = 20;

export interface MultiSeriesQuery extends SeriesOptions {
  devices: string[];
  metrics: string[];
}

export type SeriesRequest = { kind: 'single'; q: SeriesQuery } | { kind: 'multi'; q: MultiSeriesQuery };

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_QUERY', message);
}

function names(params: URLSearchParams, key: string, max: number): { list: string[]; multi: boolean } {
  const raw = params.getAll(key);
  const parts = raw.flatMap((v) => v.split(','));
  if (parts.length === 0 || parts.every((p) => p === '')) throw bad(`${key} is required`);
  if (parts.length > max) throw bad(`at most ${max} values of ${key} per query`);
  for (const p of parts) if (!NAME_RE.test(p)) throw bad(`${key} must match [A-Za-z0-9_.-]{1,64} (several: separated by commas)`);
  return { list: [...new Set(parts)], multi: raw.length > 1 || raw[0].includes(',') };
}

/** The single form when one device and one metric are named plainly, else the multi form. */
export function parseSeriesRequest(params: URLSearchParams, now = Date.now()): SeriesRequest {
  const d = names(params, 'device', MAX_DEVICES);
  const m = names(params, 'metric', MAX_METRICS);
  if (!d.multi && !m.multi) return { kind: 'single', q: parseSeriesQuery(params, now) };
  return { kind: 'multi', q: { devices: d.list, metrics: m.list, ...parseSeriesOptions(params, now) } };
}

export function multiSeriesInfluxQL(q: MultiSeriesQuery): string {
  const measurement = q.window === undefined ? RAW_MEASUREMENT : aggMeasurement(q.window);
  const select = q.metrics
    .map((metric, i) => {
      let field = metric;
      let fn: SeriesFn | undefined = q.fn;
      if (q.window !== undefined) {
        field = `${metric}_${q.fn ?? 'mean'}`;
        fn = q.fn === undefined ? 'mean' : (REBUCKET[q.fn] as SeriesFn);
      }
      const expr = q.every === undefined ? quoteIdent(field) : `${fn}(${quoteIdent(field)})`;
      return `${expr} AS ${quoteIdent(`v${i}`)}`;
    })
    .join(', ');
  const devices = q.devices.map((d) => `${quoteIdent('device')} = ${quoteString(d)}`).join(' OR ');
  const where = `(${devices}) AND time >= ${msToNs(q.from)} AND time <= ${msToNs(q.to) + 999_999n}`;
  const group = q.every === undefined ? ` GROUP BY ${quoteIdent('device')}` : ` GROUP BY time(${q.every}ms), ${quoteIdent('device')} fill(none)`;
  return `SELECT ${select} FROM ${quoteIdent(measurement)} WHERE ${where}${group} ORDER BY time ASC LIMIT ${q.limit}`;
}

export interface SeriesOf {
  device: string;
  metric: string;
  points: SeriesPoint[];
}

export function multiSeriesFromSeries(series: InfluxSeries[], q: MultiSeriesQuery): SeriesOf[] {
  const byDevice = new Map<string, InfluxSeries[]>();
  for (const s of series) {
    const d = s.tags?.device;
    if (d !== undefined) byDevice.set(d, [...(byDevice.get(d) ?? []), s]);
  }
  const out: SeriesOf[] = [];
  for (const device of q.devices) {
    for (let i = 0; i < q.metrics.length; i++) {
      const points: SeriesPoint[] = [];
      for (const s of byDevice.get(device) ?? []) {
        const ti = s.columns.indexOf('time');
        const vi = s.columns.indexOf(`v${i}`);
        if (vi < 0) continue;
        for (const row of s.values) {
          const t = row[ti];
          const v = row[vi];
          if (typeof t === 'number' && (typeof v === 'number' || typeof v === 'boolean')) points.push({ t, v });
        }
      }
      points.sort((a, b) => a.t - b.t);
      out.push({ device, metric: q.metrics[i], points });
    }
  }
  return out;
}

/** The newest value of every metric of every device, over readings since `sinceMs`. */
export function devicesLatestInfluxQL(sinceMs: number): string {
  return `SELECT last(*) FROM ${quoteIdent(RAW_MEASUREMENT)} WHERE time >= ${msToNs(sinceMs)} GROUP BY ${quoteIdent('device')}`;
}

/**
 * Add `values` to each device: the newest point's fields (devicesInfluxQL) over the per-metric
 * `last_*` columns of devicesLatestInfluxQL (metrics the newest reading did not carry).
 */
export function withLatestValues(devices: DeviceInfo[], newest: InfluxSeries[], latest: InfluxSeries[]): DeviceInfo[] {
  const values = new Map<string, Record<string, number | boolean>>();
  const put = (device: string, metric: string, v: unknown) => {
    if (typeof v !== 'number' && typeof v !== 'boolean') return;
    const m = values.get(device) ?? {};
    m[metric] = v;
    values.set(device, m);
  };
  for (const s of latest) {
    const device = s.tags?.device;
    const row = s.values[0];
    if (!device || !row) continue;
    s.columns.forEach((c, i) => c.startsWith('last_') && put(device, c.slice(5), row[i]));
  }
  for (const s of newest) {
    const device = s.tags?.device;
    const row = s.values[0];
    if (!device || !row) continue;
    s.columns.forEach((c, i) => c !== 'time' && c !== 'gateway' && put(device, c, row[i]));
  }
  return devices.map((d) => ({ ...d, values: Object.fromEntries(Object.entries(values.get(d.device) ?? {}).sort(([a], [b]) => a.localeCompare(b))) }));
}

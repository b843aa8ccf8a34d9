/**
 * GET /api/v1/alerts: current alerts from the engine, past ones from the `alerts` measurement.
 *
 *   state    firing (default) | pending | active (pending + firing) | resolved | all
 *   device   one device id; rule: one rule id (both [A-Za-z0-9_.-]{1,64})
 *   from     how far back resolved alerts are read (default -7d; same forms as /api/v1/series)
 *   limit    most alerts returned (default 100, at most 1000)
 *
 * → { alerts: [{ id, rule, device, severity, state, metric, value, threshold, since?, firedAt?,
 *                resolvedAt?, updatedAt, message }] }, active ones first, then newest first.
 *
 * Current state comes from memory (authoritative, includes what the outbox has not yet written to
 * InfluxDB); resolved incidents are the `resolved` points of the history, one per incident, merged
 * with the engine's own by id. firing/pending/active need no InfluxDB query.
 */
import { SluiceError } from '../protocols/errors.js';
import type { AlertStateName, KeyState } from './alert-engine.js';
import { quoteIdent, quoteString, type InfluxSeries } from './influxql.js';
import { ALERTS_MEASUREMENT } from './notifiers.js';
import { msToNs } from './points.js';
import { NAME_RE, parseTime } from './series-query.js';

export const ALERT_STATES = ['firing', 'pending', 'active', 'resolved', 'all'] as const;
export type AlertFilter = (typeof ALERT_STATES)[number];

export interface AlertQuery {
  state: AlertFilter;
  device?: string;
  rule?: string;
  from: number;
  limit: number;
}

export interface AlertView {
  id: string;
  rule: string;
  device: string;
  severity: string;
  state: AlertStateName;
  metric: string;
  value?: number;
  threshold?: number;
  since?: number;
  firedAt?: number;
  resolvedAt?: number;
  updatedAt?: number;
  message?: string;
}

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_QUERY', message);
}

export function parseAlertQuery(params: URLSearchParams, now = Date.now()): AlertQuery {
  const state = params.get('state') ?? 'firing';
  if (!(ALERT_STATES as readonly string[]).includes(state)) throw bad(`state must be one of ${ALERT_STATES.join(', ')}`);
  const q: AlertQuery = { state: state as AlertFilter, from: parseTime(params.get('from') ?? '-7d', 'from', now), limit: 100 };
  for (const key of ['device', 'rule'] as const) {
    const v = params.get(key);
    if (v === null || v === '') continue;
    if (!NAME_RE.test(v)) throw bad(`${key} must match [A-Za-z0-9_.-]{1,64}`);
    q[key] = v;
  }
  const limit = params.get('limit');
  if (limit !== null) {
    if (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > 1000) throw bad('limit must be an integer from 1 to 1000');
    q.limit = Number(limit);
  }
  return q;
}

export function needsHistory(q: AlertQuery): boolean {
  return q.state === 'resolved' || q.state === 'all';
}

function wanted(q: AlertQuery, state: AlertStateName): boolean {
  switch (q.state) {
    case 'firing':
    case 'pending':
    case 'resolved':
      return state === q.state;
    case 'active':
      return state === 'firing' || state === 'pending';
    case 'all':
      return state !== 'ok';
  }
}

export function currentAlerts(states: KeyState[], q: AlertQuery): AlertView[] {
  const out: AlertView[] = [];
  for (const s of states) {
    if (!wanted(q, s.state) || s.id === undefined) continue;
    if ((q.device && s.device !== q.device) || (q.rule && s.rule !== q.rule)) continue;
    if (s.state === 'resolved' && (s.resolvedAt ?? 0) < q.from) continue;
    out.push({
      id: s.id,
      rule: s.rule,
      device: s.device,
      severity: s.severity,
      state: s.state,
      metric: s.metric,
      ...(s.value !== undefined ? { value: s.value } : {}),
      ...(s.threshold !== undefined ? { threshold: s.threshold } : {}),
      ...(s.since !== undefined ? { since: s.since } : {}),
      ...(s.firedAt !== undefined ? { firedAt: s.firedAt } : {}),
      ...(s.resolvedAt !== undefined ? { resolvedAt: s.resolvedAt } : {}),
      ...(s.updatedAt !== undefined ? { updatedAt: s.updatedAt } : {}),
      ...(s.message !== undefined ? { message: s.message } : {}),
    });
  }
  return out;
}

export function historyInfluxQL(q: AlertQuery): string {
  const where = [`${quoteIdent('state')} = 'resolved'`, `time >= ${msToNs(q.from)}`];
  if (q.device) where.push(`${quoteIdent('device')} = ${quoteString(q.device)}`);
  if (q.rule) where.push(`${quoteIdent('rule')} = ${quoteString(q.rule)}`);
  return `SELECT * FROM ${quoteIdent(ALERTS_MEASUREMENT)} WHERE ${where.join(' AND ')} ORDER BY time DESC LIMIT ${q.limit}`;
}

export function historyFromSeries(series: InfluxSeries[]): AlertView[] {
  const out: AlertView[] = [];
  for (const s of series) {
    for (const row of s.values) {
      const r: Record<string, unknown> = {};
      s.columns.forEach((c, i) => (r[c] = row[i]));
      if (typeof r.alert_id !== 'string' || typeof r.rule !== 'string' || typeof r.device !== 'string' || typeof r.time !== 'number') continue;
      const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
      out.push({
        id: r.alert_id,
        rule: r.rule,
        device: r.device,
        severity: typeof r.severity === 'string' ? r.severity : 'warning',
        state: 'resolved',
        metric: typeof r.metric === 'string' ? r.metric : '',
        ...(num(r.value) !== undefined ? { value: num(r.value) } : {}),
        ...(num(r.threshold) !== undefined ? { threshold: num(r.threshold) } : {}),
        ...(num(r.since) !== undefined ? { since: num(r.since) } : {}),
        ...(num(r.fired_at) !== undefined ? { firedAt: num(r.fired_at) } : {}),
        resolvedAt: r.time,
        updatedAt: r.time,
        ...(typeof r.message === 'string' ? { message: r.message } : {}),
      });
    }
  }
  return out;
}

/** Engine entries win over history entries of the same incident; active first, then newest first. */
export function mergeAlerts(current: AlertView[], past: AlertView[], limit: number): AlertView[] {
  const byId = new Map<string, AlertView>();
  for (const a of past) byId.set(a.id, a);
  for (const a of current) byId.set(a.id, a);
  const rank = (a: AlertView) => (a.state === 'firing' ? 0 : a.state === 'pending' ? 1 : 2);
  return [...byId.values()].sort((a, b) => rank(a) - rank(b) || (b.updatedAt ?? 0) - (a.updatedAt ?? 0) || a.id.localeCompare(b.id)).slice(0, limit);
}

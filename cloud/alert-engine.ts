/**
 * The alert state machine: per (rule, device) ok → pending → firing → resolved, evaluated in event time.
 *
 * Pure and synchronous: no I/O, no timers. `evaluate` and `due` compute an Evaluation (the new states
 * of the keys they touched plus the transitions) WITHOUT changing the engine; `commit` applies it.
 * The caller persists the Evaluation first and commits only after the write succeeded, so the
 * in-memory state never runs ahead of the disk (alert-service.ts). The same input applied to the same
 * state always gives the same transitions with the same ids: that is what makes a retried batch safe.
 *
 * Semantics:
 * - Threshold rules (above / below / outside): a reading that breaches starts `pending` at its event
 *   time (`since`); a later reading that still breaches at since + for fires (for = 0 fires at once); a
 *   reading that no longer breaches while pending cancels back to `ok`. A firing alert resolves only
 *   on a reading inside the `clear` bound (hysteresis), so a signal oscillating between clear and the
 *   threshold never flaps. Booleans count as 0/1.
 * - Event time: readings of one key older than the newest already evaluated are late and skipped
 *   (counted); equal times are evaluated, and re-evaluating the newest reading changes nothing.
 * - Absent rules: the device's own readings are the clock. A reading of the device with no matching
 *   reading for `absent` fires at lastSeen + absent; the next matching reading resolves. A device that
 *   went fully silent has no readings to advance event time, so each key also carries a wall-clock
 *   deadline (time received + absent) and `due(now)` fires those, at the same event time and with the
 *   same id as the event-time path would have used.
 * - Transition ids: an incident id is a hash of rule, device, the event time the condition started and
 *   the key's transition count, stable across retries, replays and restarts.
 */
import { createHash } from 'node:crypto';
import type { AggRecord, RawRecord } from '../protocols/batch.js';
import type { Rule, RuleSet, Severity, ThresholdCondition } from './alert-rules.js';

export type AlertStateName = 'ok' | 'pending' | 'firing' | 'resolved';

/** The persisted state of one (rule, device). Plain JSON. */
export interface KeyState {
  rule: string;
  device: string;
  kind: 'threshold' | 'absent';
  /** What the rule reads ("temperature", "telemetry_1m.temperature_mean", "any"); a changed input resets the state. */
  metric: string;
  severity: Severity;
  state: AlertStateName;
  /** Newest event time evaluated for this key (ms). */
  lastTs: number;
  /** Threshold: event time the condition started holding. */
  since?: number;
  /** Absent: event time of the newest matching reading. */
  lastSeen?: number;
  /** Absent: wall-clock ms after which a silent device fires. */
  deadline?: number;
  firedAt?: number;
  resolvedAt?: number;
  /** Event time of the last transition. */
  updatedAt?: number;
  value?: number;
  threshold?: number;
  message?: string;
  /** Transitions so far (sub-millisecond offset of history points, and part of incident ids). */
  n: number;
  /** Current incident id. */
  id?: string;
}

export interface Transition {
  id: string;
  rule: string;
  device: string;
  severity: Severity;
  metric: string;
  from: AlertStateName;
  to: AlertStateName;
  /** Event time of the transition (ms). */
  ts: number;
  value: number;
  threshold: number;
  message: string;
  /** The key's transition count after this transition. */
  n: number;
  since?: number;
  firedAt?: number;
  notify: string[];
}

/** One reading (raw) or one window aggregate (window set), flattened. */
export interface Observation {
  device: string;
  ts: number;
  values: Record<string, number | boolean>;
  tags?: Record<string, string>;
  /** Set for window aggregates: values are `<metric>_<stat>` fields, ts is the window end. */
  window?: string;
}

export interface Evaluation {
  /** New state of every key touched. */
  changed: Map<string, KeyState>;
  /** Keys to forget (rules removed or changed). */
  removed: string[];
  transitions: Transition[];
  /** Readings skipped because they were older than the key's newest evaluated event time. */
  late: number;
}

export function stateKey(rule: string, device: string): string {
  return `${rule}!${device}`;
}

/** Observations of a batch's new records and aggregates, in gateway-sequence order. */
export function toObservations(recs: RawRecord[], aggs: AggRecord[]): Observation[] {
  const items: { seq: number; o: Observation }[] = [];
  for (const r of recs) items.push({ seq: r.seq, o: { device: r.dev, ts: r.ts, values: r.vals, ...(r.tags ? { tags: r.tags } : {}) } });
  for (const a of aggs) {
    const values: Record<string, number | boolean> = {};
    for (const [m, s] of Object.entries(a.aggs)) {
      values[`${m}_count`] = s.count;
      values[`${m}_mean`] = s.mean;
      if (s.min !== undefined) values[`${m}_min`] = s.min;
      if (s.max !== undefined) values[`${m}_max`] = s.max;
      if (s.sum !== undefined) values[`${m}_sum`] = s.sum;
      if (s.last !== undefined) values[`${m}_last`] = s.last;
    }
    items.push({ seq: a.seq, o: { device: a.dev, ts: a.end, values, window: a.win } });
  }
  items.sort((x, y) => x.seq - y.seq);
  return items.map((i) => i.o);
}

function inputName(rule: Rule): string {
  const i = rule.input;
  return i.kind === 'raw' ? i.metric : i.kind === 'agg' ? `telemetry_${i.window}.${i.metric}_${i.stat}` : 'any';
}

function kindOf(rule: Rule): KeyState['kind'] {
  return rule.cond.kind === 'absent' ? 'absent' : 'threshold';
}

function incidentId(rule: string, device: string, start: number, n: number): string {
  return createHash('sha256').update(`${rule}\0${device}\0${start}\0${n}`).digest('hex').slice(0, 20);
}

function breach(c: ThresholdCondition, v: number): boolean {
  if (c.kind === 'above') return v > c.hi!;
  if (c.kind === 'below') return v < c.lo!;
  return v < c.lo! || v > c.hi!;
}

function cleared(c: ThresholdCondition, v: number): boolean {
  if (c.kind === 'above') return c.clearHi === undefined ? v <= c.hi! : v < c.clearHi;
  if (c.kind === 'below') return c.clearLo === undefined ? v >= c.lo! : v > c.clearLo;
  return c.clearLo === undefined ? v >= c.lo! && v <= c.hi! : v > c.clearLo && v < c.clearHi!;
}

/** The bound that matters for this value: the crossed limit when breaching, the clear bound when resolving. */
function thresholdOf(c: ThresholdCondition, v: number, resolving: boolean): number {
  if (c.kind === 'above') return resolving ? (c.clearHi ?? c.hi!) : c.hi!;
  if (c.kind === 'below') return resolving ? (c.clearLo ?? c.lo!) : c.lo!;
  const upper = v > (c.lo! + c.hi!) / 2;
  if (!resolving) return upper ? c.hi! : c.lo!;
  return upper ? (c.clearHi ?? c.hi!) : (c.clearLo ?? c.lo!);
}

function fmtDuration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function fmtValue(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000);
}

function render(template: string, vars: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (m, k: string) => vars[k] ?? m);
}

function numeric(v: number | boolean | undefined): number | undefined {
  if (typeof v === 'boolean') return v ? 1 : 0;
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export class AlertEngine {
  private rules: Rule[] = [];
  private readonly byDevice = new Map<string, Rule[]>();
  private readonly states = new Map<string, KeyState>();

  constructor(rules?: RuleSet) {
    if (rules) this.setRules(rules);
  }

  /**
   * Replace the rules. Returns the keys whose state no longer applies (rule gone, or its kind or input
   * changed); the caller deletes them from disk. States of rules that stay are kept, so a reload never
   * re-fires or forgets an alert.
   */
  setRules(set: RuleSet): string[] {
    this.rules = set.rules;
    this.byDevice.clear();
    const byId = new Map(set.rules.map((r) => [r.id, r]));
    const dropped: string[] = [];
    for (const [key, st] of this.states) {
      const r = byId.get(st.rule);
      if (!r || kindOf(r) !== st.kind || inputName(r) !== st.metric || !r.deviceRe.test(st.device)) {
        dropped.push(key);
        this.states.delete(key);
      }
    }
    return dropped;
  }

  ruleList(): readonly Rule[] {
    return this.rules;
  }

  /** Load persisted states (at start). */
  load(states: Iterable<KeyState>): void {
    for (const s of states) this.states.set(stateKey(s.rule, s.device), s);
  }

  get(rule: string, device: string): KeyState | undefined {
    return this.states.get(stateKey(rule, device));
  }

  list(): KeyState[] {
    return [...this.states.values()];
  }

  get size(): number {
    return this.states.size;
  }

  private rulesFor(device: string): Rule[] {
    let rs = this.byDevice.get(device);
    if (!rs) {
      rs = this.rules.filter((r) => r.deviceRe.test(device));
      // The cache is bounded by the number of devices; a burst of one-off ids must not grow it forever.
      if (this.byDevice.size > 100_000) this.byDevice.clear();
      this.byDevice.set(device, rs);
    }
    return rs;
  }

  /** Evaluate new readings (in gateway order) received at wall-clock `receivedAt`. Does not change the engine. */
  evaluate(observations: Observation[], receivedAt: number): Evaluation {
    const ev: Evaluation = { changed: new Map(), removed: [], transitions: [], late: 0 };
    for (const o of observations) {
      for (const rule of this.rulesFor(o.device)) {
        if (rule.tags.length > 0 && !rule.tags.every((t) => o.tags?.[t.key] !== undefined && t.re.test(o.tags[t.key]))) continue;
        if (rule.cond.kind === 'absent') this.absent(rule, o, receivedAt, ev);
        else this.threshold(rule, rule.cond, o, ev);
      }
    }
    return ev;
  }

  /** Fire absent rules whose wall-clock deadline passed (devices that went fully silent), optionally only of `devices`. */
  due(now: number, devices?: Set<string>): Evaluation {
    const ev: Evaluation = { changed: new Map(), removed: [], transitions: [], late: 0 };
    const byId = new Map(this.rules.map((r) => [r.id, r]));
    for (const [key, st] of this.states) {
      if (st.kind !== 'absent' || st.state === 'firing' || st.deadline === undefined || st.deadline > now || st.lastSeen === undefined) continue;
      if (devices && !devices.has(st.device)) continue;
      const rule = byId.get(st.rule);
      if (!rule || rule.cond.kind !== 'absent') continue;
      const at = st.lastSeen + rule.cond.ms;
      // lastTs stays: a backlog reading from before `at` that arrives later must still resolve it.
      const next = this.transition(rule, { ...st, deadline: undefined }, 'firing', at, rule.cond.ms / 1000, rule.cond.ms / 1000, ev);
      ev.changed.set(key, next);
    }
    return ev;
  }

  /** Earliest wall-clock deadline of an absent key that is not firing. */
  nextDeadline(): number | undefined {
    let min: number | undefined;
    for (const st of this.states.values()) {
      if (st.kind === 'absent' && st.state !== 'firing' && st.deadline !== undefined && (min === undefined || st.deadline < min)) min = st.deadline;
    }
    return min;
  }

  commit(ev: Evaluation): void {
    for (const k of ev.removed) this.states.delete(k);
    for (const [k, s] of ev.changed) this.states.set(k, s);
  }

  private current(key: string, ev: Evaluation): KeyState | undefined {
    return ev.changed.get(key) ?? this.states.get(key);
  }

  private threshold(rule: Rule, c: ThresholdCondition, o: Observation, ev: Evaluation): void {
    const i = rule.input;
    let v: number | undefined;
    if (i.kind === 'raw' && o.window === undefined) v = numeric(o.values[i.metric]);
    else if (i.kind === 'agg' && o.window === i.window) v = numeric(o.values[`${i.metric}_${i.stat}`]);
    if (v === undefined) return;
    const key = stateKey(rule.id, o.device);
    let st = this.current(key, ev) ?? { rule: rule.id, device: o.device, kind: 'threshold', metric: inputName(rule), severity: rule.severity, state: 'ok', lastTs: o.ts, n: 0 };
    if (o.ts < st.lastTs) {
      ev.late++;
      return;
    }
    st = { ...st, lastTs: o.ts };
    const hit = breach(c, v);
    switch (st.state) {
      case 'ok':
      case 'resolved':
        if (hit) {
          const started: KeyState = { ...st, since: o.ts, id: incidentId(rule.id, o.device, o.ts, st.n) };
          st = this.transition(rule, started, rule.forMs === 0 ? 'firing' : 'pending', o.ts, v, thresholdOf(c, v, false), ev);
        }
        break;
      case 'pending':
        if (!hit) st = this.transition(rule, st, 'ok', o.ts, v, thresholdOf(c, v, false), ev);
        else if (o.ts - (st.since ?? o.ts) >= rule.forMs) st = this.transition(rule, st, 'firing', o.ts, v, thresholdOf(c, v, false), ev);
        break;
      case 'firing':
        if (cleared(c, v)) {
          // An `outside` alert resolves at the clear bound on the side it fired on.
          const side = c.kind === 'outside' ? (st.threshold === c.hi ? (c.clearHi ?? c.hi!) : (c.clearLo ?? c.lo!)) : thresholdOf(c, v, true);
          st = this.transition(rule, st, 'resolved', o.ts, v, side, ev);
        }
        break;
    }
    ev.changed.set(key, st);
  }

  private absent(rule: Rule, o: Observation, receivedAt: number, ev: Evaluation): void {
    if (o.window !== undefined || rule.cond.kind !== 'absent') return;
    const ms = rule.cond.ms;
    const matches = rule.input.kind === 'any' || (rule.input.kind === 'raw' && o.values[rule.input.metric] !== undefined);
    const key = stateKey(rule.id, o.device);
    let st = this.current(key, ev);
    if (!st) {
      if (!matches) return; // never saw the metric from this device: nothing to miss yet
      st = { rule: rule.id, device: o.device, kind: 'absent', metric: inputName(rule), severity: rule.severity, state: 'ok', lastTs: o.ts, n: 0 };
    }
    if (o.ts < st.lastTs) {
      ev.late++;
      return;
    }
    st = { ...st, lastTs: o.ts };
    const gapFrom = st.lastSeen;
    if (st.state !== 'firing' && gapFrom !== undefined && o.ts - gapFrom >= ms) {
      // Event time shows the silence: fire where it began to count, exactly as the wall clock would have.
      st = this.transition(rule, { ...st, deadline: undefined }, 'firing', gapFrom + ms, ms / 1000, ms / 1000, ev);
    }
    if (matches) {
      if (st.state === 'firing') st = this.transition(rule, st, 'resolved', o.ts, gapFrom === undefined ? 0 : (o.ts - gapFrom) / 1000, ms / 1000, ev);
      st = { ...st, lastSeen: o.ts, deadline: receivedAt + ms };
    }
    ev.changed.set(key, st);
  }

  private transition(rule: Rule, st: KeyState, to: AlertStateName, ts: number, value: number, threshold: number, ev: Evaluation): KeyState {
    const n = st.n + 1;
    let id = st.id;
    let since = st.since;
    if (to === 'firing' && (st.state === 'ok' || st.state === 'resolved')) {
      if (rule.cond.kind === 'absent') {
        since = st.lastSeen;
        id = incidentId(rule.id, st.device, since ?? ts, st.n);
      } else if (id === undefined || st.since !== ts) {
        id = incidentId(rule.id, st.device, ts, st.n);
      }
    }
    id ??= incidentId(rule.id, st.device, ts, st.n);
    const firedAt = to === 'firing' ? ts : st.firedAt;
    const message = this.message(rule, st.device, to, value, threshold, ts, since);
    const t: Transition = {
      id,
      rule: rule.id,
      device: st.device,
      severity: rule.severity,
      metric: st.metric,
      from: st.state,
      to,
      ts,
      value,
      threshold,
      message,
      n,
      ...(since !== undefined ? { since } : {}),
      ...(firedAt !== undefined && to !== 'pending' && to !== 'ok' ? { firedAt } : {}),
      notify: rule.notify,
    };
    ev.transitions.push(t);
    return {
      ...st,
      state: to,
      severity: rule.severity,
      n,
      id,
      ...(since !== undefined ? { since } : {}),
      firedAt: to === 'firing' ? ts : to === 'resolved' ? st.firedAt : undefined,
      resolvedAt: to === 'resolved' ? ts : undefined,
      updatedAt: ts,
      value,
      threshold,
      message,
    };
  }

  private message(rule: Rule, device: string, to: AlertStateName, value: number, threshold: number, ts: number, since: number | undefined): string {
    const metric = inputName(rule);
    if (rule.message) {
      return render(rule.message, { rule: rule.id, device, metric, value: fmtValue(value), threshold: fmtValue(threshold), state: to, severity: rule.severity });
    }
    const c = rule.cond;
    if (c.kind === 'absent') {
      const what = metric === 'any' ? 'reading' : `${metric} reading`;
      if (to === 'firing') return `no ${what} from ${device} for ${fmtDuration(c.ms)} (last at ${new Date(since ?? ts - c.ms).toISOString()})`;
      return `${device} reporting ${metric === 'any' ? '' : `${metric} `}again after ${fmtDuration(Math.round(value * 1000))}`;
    }
    const rel = c.kind === 'above' ? 'above' : c.kind === 'below' ? 'below' : 'outside';
    const bound = c.kind === 'outside' ? `[${c.lo}, ${c.hi}]` : fmtValue(threshold);
    const hold = rule.forMs > 0 ? ` for ${fmtDuration(rule.forMs)}` : '';
    switch (to) {
      case 'pending':
        return `${metric} ${fmtValue(value)} ${rel} ${bound} on ${device}, pending${hold}`;
      case 'firing':
        return `${metric} ${fmtValue(value)} ${rel} ${bound}${hold} on ${device}`;
      case 'ok':
        return `${metric} ${fmtValue(value)} back within limits on ${device} before ${fmtDuration(rule.forMs)}`;
      case 'resolved':
        return `${metric} ${fmtValue(value)} on ${device}, cleared (${c.kind === 'above' ? '<' : c.kind === 'below' ? '>' : 'inside'} ${fmtValue(threshold)})`;
    }
  }
}

/**
 * The alert rules file (`sluice cloud --rules FILE`): YAML → a checked, compiled RuleSet.
 *
 *   rules:
 *     - id: hot                      [A-Za-z0-9_.-]{1,64}, unique
 *       metric: temperature          a raw metric; or `on: telemetry_1m.temperature_mean` (a window
 *                                    aggregate field); `metric: any` only with `absent`
 *       devices: "greenhouse-*"      glob (* and ?) or a list of globs on the device id; default "*"
 *       tags: { room: "a*" }         optional globs on the reading's tags (raw readings only)
 *       above: 30                    exactly one of: above, below, outside: [lo, hi], absent: 5m
 *       for: 30s                     the condition must hold this long in event time (default 0s)
 *       clear: 28                    hysteresis: resolve only below 28 (above a `below` rule's clear;
 *                                    inside [clo, chi] for `outside`); default: when the condition ends
 *       severity: critical           info | warning (default) | critical
 *       notify: [ops-webhook]        notifier names
 *       message: "…"                 optional; {rule} {device} {metric} {value} {threshold} {state}
 *   notifiers:
 *     ops-webhook: { webhook: http://…, headers: {…}, timeout: 10s }
 *     local-mqtt:  { mqtt: mqtt://…, topic: alerts/{device}/{rule}, qos: 1, retain: false }
 *     audit:       { log: warn }
 *
 * Every defect is a SluiceError('SLUICE_BAD_CONFIG') whose message names the source, the rule (or
 * notifier) and the key, with `detail: { rule | notifier, key }` for callers; unknown keys are refused.
 * Durations need a unit ("30s"): a bare number is refused rather than guessed.
 */
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { SluiceError } from '../protocols/errors.js';
import { parseDuration } from '../protocols/units.js';

export const RULE_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const METRIC_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const GLOB_RE = /^[A-Za-z0-9_.*?-]{1,64}$/;
const WINDOW_RE = /^[0-9a-z_]{1,32}$/;
export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];
export const AGG_STATS = ['mean', 'min', 'max', 'last', 'sum', 'count'] as const;
export type AggStat = (typeof AGG_STATS)[number];

/** What a rule reads: a raw metric, any raw reading (absent rules), or one window-aggregate field. */
export type RuleInput =
  | { kind: 'raw'; metric: string }
  | { kind: 'any' }
  | { kind: 'agg'; window: string; metric: string; stat: AggStat };

export interface ThresholdCondition {
  kind: 'above' | 'below' | 'outside';
  /** above: the limit; outside: the upper bound. */
  hi?: number;
  /** below: the limit; outside: the lower bound. */
  lo?: number;
  /** Hysteresis bounds: resolve only below clearHi (above rules) / above clearLo (below rules). */
  clearHi?: number;
  clearLo?: number;
}

export interface AbsentCondition {
  kind: 'absent';
  ms: number;
}

export interface Rule {
  id: string;
  severity: Severity;
  notify: string[];
  message?: string;
  devices: string[];
  deviceRe: RegExp;
  tags: { key: string; re: RegExp }[];
  input: RuleInput;
  cond: ThresholdCondition | AbsentCondition;
  forMs: number;
}

export type NotifierSpec =
  | { name: string; kind: 'webhook'; url: string; headers: Record<string, string>; timeoutMs: number }
  | { name: string; kind: 'mqtt'; url: string; topic: string; qos: 0 | 1; retain: boolean; username?: string; password?: string; timeoutMs: number }
  | { name: string; kind: 'log'; level: 'info' | 'warn' | 'error' };

export interface RuleSet {
  rules: Rule[];
  notifiers: Map<string, NotifierSpec>;
  /** SHA-256 of the source text: a reload with unchanged text is a no-op. */
  hash: string;
}

export const EMPTY_RULES: RuleSet = { rules: [], notifiers: new Map(), hash: '' };

type Where = { rule: string } | { notifier: string } | Record<string, never>;

function fail(source: string, where: Where, key: string, message: string): never {
  const who = 'rule' in where ? `rule "${where.rule}": ` : 'notifier' in where ? `notifier "${where.notifier}": ` : '';
  throw new SluiceError('SLUICE_BAD_CONFIG', `${source}: ${who}key "${key}": ${message}`, { detail: { ...where, key } });
}

function isMap(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

export function globToRegExp(globs: string[]): RegExp {
  const parts = globs.map((g) => g.replace(/[.+^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.'));
  return new RegExp(`^(?:${parts.join('|')})$`);
}

function duration(v: unknown, source: string, where: Where, key: string): number {
  if (typeof v === 'number') fail(source, where, key, `${v} has no unit; write e.g. ${v}s or ${v}m`);
  if (typeof v !== 'string') fail(source, where, key, 'must be a duration with a unit, e.g. 30s or 5m');
  if (/^\s*\d+(\.\d+)?\s*$/.test(v)) fail(source, where, key, `"${v}" has no unit; write e.g. ${v.trim()}s`);
  try {
    return parseDuration(v, key);
  } catch {
    fail(source, where, key, `"${v.slice(0, 40)}" is not a duration (examples: 30s, 5m, 1h)`);
  }
}

function num(v: unknown, source: string, where: Where, key: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(source, where, key, 'must be a finite number');
  return v;
}

function pair(v: unknown, source: string, where: Where, key: string): [number, number] {
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) fail(source, where, key, 'must be a pair of numbers [low, high]');
  const [lo, hi] = v as [number, number];
  if (!(lo < hi)) fail(source, where, key, `the low bound ${lo} must be below the high bound ${hi}`);
  return [lo, hi];
}

function stringList(v: unknown, source: string, where: Where, key: string): string[] {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === 'string')) fail(source, where, key, 'must be a string or a non-empty list of strings');
  return list as string[];
}

const RULE_KEYS = new Set(['id', 'metric', 'on', 'devices', 'tags', 'above', 'below', 'outside', 'absent', 'for', 'clear', 'severity', 'notify', 'message', 'description']);

function parseInput(r: Record<string, unknown>, absent: boolean, source: string, w: Where): RuleInput {
  if (r.metric !== undefined && r.on !== undefined) fail(source, w, 'on', 'give either metric or on, not both');
  if (r.on !== undefined) {
    if (typeof r.on !== 'string') fail(source, w, 'on', 'must be a string like telemetry_1m.temperature_mean');
    if (absent) fail(source, w, 'on', 'absent rules watch raw readings; use metric');
    const dot = r.on.indexOf('.');
    const measurement = dot < 0 ? r.on : r.on.slice(0, dot);
    const field = dot < 0 ? '' : r.on.slice(dot + 1);
    if (measurement === 'telemetry') {
      if (!METRIC_RE.test(field)) fail(source, w, 'on', `"${r.on.slice(0, 80)}": "${field.slice(0, 64)}" is not a metric name`);
      return { kind: 'raw', metric: field };
    }
    const m = /^telemetry_(.+)$/.exec(measurement);
    const f = /^(.+)_(mean|min|max|last|sum|count)$/.exec(field);
    if (!m || !WINDOW_RE.test(m[1]) || !f || !METRIC_RE.test(f[1])) {
      fail(source, w, 'on', `"${r.on.slice(0, 80)}" must be telemetry_<window>.<metric>_<mean|min|max|last|sum|count> (e.g. telemetry_1m.temperature_mean)`);
    }
    return { kind: 'agg', window: m[1], metric: f[1], stat: f[2] as AggStat };
  }
  if (r.metric === undefined) {
    if (absent) return { kind: 'any' };
    fail(source, w, 'metric', 'is required (or on: telemetry_<window>.<metric>_<stat>)');
  }
  if (typeof r.metric !== 'string') fail(source, w, 'metric', 'must be a metric name');
  if (r.metric === 'any') {
    if (!absent) fail(source, w, 'metric', '"any" only works with absent');
    return { kind: 'any' };
  }
  if (!METRIC_RE.test(r.metric)) fail(source, w, 'metric', `"${r.metric.slice(0, 70)}" is not a metric name ([A-Za-z][A-Za-z0-9_.-]{0,63})`);
  return { kind: 'raw', metric: r.metric };
}

function parseRule(raw: unknown, index: number, ids: Set<string>, notifiers: Map<string, NotifierSpec>, source: string): Rule {
  const anon: Where = { rule: `rules[${index}]` };
  if (!isMap(raw)) fail(source, anon, 'rules', `rules[${index}] must be a mapping`);
  const r = raw;
  if (typeof r.id !== 'string' || !RULE_ID_RE.test(r.id)) fail(source, anon, 'id', 'is required and must match [A-Za-z0-9_.-]{1,64}');
  const id = r.id;
  const w: Where = { rule: id };
  if (ids.has(id)) fail(source, w, 'id', 'is used by two rules');
  ids.add(id);
  for (const k of Object.keys(r)) if (!RULE_KEYS.has(k)) fail(source, w, k, `unknown key (allowed: ${[...RULE_KEYS].join(', ')})`);

  const kinds = (['above', 'below', 'outside', 'absent'] as const).filter((k) => r[k] !== undefined);
  if (kinds.length !== 1) fail(source, w, kinds[1] ?? 'above', 'a rule needs exactly one of above, below, outside, absent');
  const kind = kinds[0];
  const input = parseInput(r, kind === 'absent', source, w);

  let cond: ThresholdCondition | AbsentCondition;
  if (kind === 'absent') {
    const ms = duration(r.absent, source, w, 'absent');
    if (ms <= 0) fail(source, w, 'absent', 'must be longer than 0s');
    if (r.for !== undefined) fail(source, w, 'for', 'does not apply to absent rules (absent is the duration)');
    if (r.clear !== undefined) fail(source, w, 'clear', 'does not apply to absent rules');
    cond = { kind: 'absent', ms };
  } else if (kind === 'above') {
    const hi = num(r.above, source, w, 'above');
    const clearHi = r.clear === undefined ? undefined : num(r.clear, source, w, 'clear');
    if (clearHi !== undefined && clearHi > hi) fail(source, w, 'clear', `must not be above the threshold ${hi} (it is where an "above" alert resolves)`);
    cond = { kind, hi, clearHi };
  } else if (kind === 'below') {
    const lo = num(r.below, source, w, 'below');
    const clearLo = r.clear === undefined ? undefined : num(r.clear, source, w, 'clear');
    if (clearLo !== undefined && clearLo < lo) fail(source, w, 'clear', `must not be below the threshold ${lo} (it is where a "below" alert resolves)`);
    cond = { kind, lo, clearLo };
  } else {
    const [lo, hi] = pair(r.outside, source, w, 'outside');
    let clearLo: number | undefined;
    let clearHi: number | undefined;
    if (r.clear !== undefined) {
      [clearLo, clearHi] = pair(r.clear, source, w, 'clear');
      if (clearLo < lo || clearHi > hi) fail(source, w, 'clear', `[${clearLo}, ${clearHi}] must lie inside outside: [${lo}, ${hi}]`);
    }
    cond = { kind, lo, hi, clearLo, clearHi };
  }

  const forMs = r.for === undefined ? 0 : duration(r.for, source, w, 'for');
  const devices = r.devices === undefined ? ['*'] : stringList(r.devices, source, w, 'devices');
  for (const g of devices) if (!GLOB_RE.test(g)) fail(source, w, 'devices', `"${g.slice(0, 70)}" is not a device glob (A-Z a-z 0-9 _ . - plus * and ?)`);
  const tags: Rule['tags'] = [];
  if (r.tags !== undefined) {
    if (!isMap(r.tags)) fail(source, w, 'tags', 'must be a mapping of tag name to glob');
    if (input.kind === 'agg') fail(source, w, 'tags', 'window aggregates carry no tags; tag matchers only work on raw readings');
    for (const [k, v] of Object.entries(r.tags)) {
      if (!METRIC_RE.test(k)) fail(source, w, `tags.${k.slice(0, 64)}`, 'is not a tag name');
      if (typeof v !== 'string' || v.length === 0 || v.length > 256) fail(source, w, `tags.${k}`, 'must be a glob string');
      tags.push({ key: k, re: new RegExp(`^${v.replace(/[.+^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's') });
    }
  }
  const severity = r.severity ?? 'warning';
  if (typeof severity !== 'string' || !(SEVERITIES as readonly string[]).includes(severity)) fail(source, w, 'severity', `must be one of ${SEVERITIES.join(', ')}`);
  const notify = r.notify === undefined ? [] : stringList(r.notify, source, w, 'notify');
  for (const n of notify) if (!notifiers.has(n)) fail(source, w, 'notify', `no notifier named "${n.slice(0, 64)}" (defined: ${[...notifiers.keys()].join(', ') || 'none'})`);
  if (r.message !== undefined && (typeof r.message !== 'string' || r.message.length > 500)) fail(source, w, 'message', 'must be a string of at most 500 characters');
  if (r.description !== undefined && typeof r.description !== 'string') fail(source, w, 'description', 'must be a string');
  return {
    id,
    severity: severity as Severity,
    notify: [...new Set(notify)],
    ...(typeof r.message === 'string' ? { message: r.message } : {}),
    devices,
    deviceRe: globToRegExp(devices),
    tags,
    input,
    cond,
    forMs,
  };
}

const TOPIC_VARS = new Set(['device', 'rule', 'state', 'severity']);

function parseNotifier(name: string, raw: unknown, source: string): NotifierSpec {
  const w: Where = { notifier: name };
  if (!RULE_ID_RE.test(name)) fail(source, w, 'notifiers', 'a notifier name must match [A-Za-z0-9_.-]{1,64}');
  if (!isMap(raw)) fail(source, w, 'notifiers', 'must be a mapping with one of webhook, mqtt, log');
  const kinds = (['webhook', 'mqtt', 'log'] as const).filter((k) => raw[k] !== undefined);
  if (kinds.length !== 1) fail(source, w, kinds[1] ?? 'webhook', 'needs exactly one of webhook, mqtt, log');
  const allowed: Record<string, string[]> = {
    webhook: ['webhook', 'headers', 'timeout'],
    mqtt: ['mqtt', 'topic', 'qos', 'retain', 'username', 'password', 'timeout'],
    log: ['log'],
  };
  for (const k of Object.keys(raw)) if (!allowed[kinds[0]].includes(k)) fail(source, w, k, `unknown key for a ${kinds[0]} notifier (allowed: ${allowed[kinds[0]].join(', ')})`);
  const timeoutMs = raw.timeout === undefined ? 10_000 : duration(raw.timeout, source, w, 'timeout');
  if (kinds[0] === 'log') {
    const level = raw.log === true ? 'warn' : raw.log;
    if (level !== 'info' && level !== 'warn' && level !== 'error') fail(source, w, 'log', 'must be info, warn or error');
    return { name, kind: 'log', level };
  }
  if (kinds[0] === 'webhook') {
    const url = urlOf(raw.webhook, ['http:', 'https:'], source, w, 'webhook');
    const headers: Record<string, string> = {};
    if (raw.headers !== undefined) {
      if (!isMap(raw.headers)) fail(source, w, 'headers', 'must be a mapping of header name to value');
      for (const [k, v] of Object.entries(raw.headers)) {
        if (!/^[A-Za-z0-9-]{1,64}$/.test(k) || typeof v !== 'string' || /[\r\n]/.test(v)) fail(source, w, `headers.${k.slice(0, 64)}`, 'must be a header name with a one-line string value');
        headers[k.toLowerCase()] = v;
      }
    }
    return { name, kind: 'webhook', url, headers, timeoutMs };
  }
  const url = urlOf(raw.mqtt, ['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ws:', 'wss:'], source, w, 'mqtt');
  const topic = raw.topic ?? 'alerts/{device}/{rule}';
  if (typeof topic !== 'string' || topic.length === 0 || topic.length > 256 || /[#+\0]/.test(topic)) fail(source, w, 'topic', 'must be a topic template without MQTT wildcards, e.g. alerts/{device}/{rule}');
  for (const m of topic.matchAll(/\{([^}]*)\}/g)) if (!TOPIC_VARS.has(m[1])) fail(source, w, 'topic', `unknown placeholder {${m[1].slice(0, 20)}} (use {device}, {rule}, {state}, {severity})`);
  const qos = raw.qos ?? 1;
  if (qos !== 0 && qos !== 1) fail(source, w, 'qos', 'must be 0 or 1');
  if (raw.retain !== undefined && typeof raw.retain !== 'boolean') fail(source, w, 'retain', 'must be true or false');
  for (const k of ['username', 'password'] as const) if (raw[k] !== undefined && typeof raw[k] !== 'string') fail(source, w, k, 'must be a string');
  return {
    name,
    kind: 'mqtt',
    url,
    topic,
    qos,
    retain: raw.retain === true,
    ...(typeof raw.username === 'string' ? { username: raw.username } : {}),
    ...(typeof raw.password === 'string' ? { password: raw.password } : {}),
    timeoutMs,
  };
}

function urlOf(v: unknown, schemes: string[], source: string, w: Where, key: string): string {
  if (typeof v !== 'string') fail(source, w, key, 'must be a URL');
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    fail(source, w, key, `"${v.slice(0, 80)}" is not a URL`);
  }
  if (!schemes.includes(u.protocol)) fail(source, w, key, `"${v.slice(0, 80)}" must use ${schemes.map((s) => s.slice(0, -1)).join(' or ')}`);
  return v;
}

/** Parse and check a rules document; `source` (e.g. the file name) prefixes every error. */
export function parseRules(text: string, source = 'rules'): RuleSet {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new SluiceError('SLUICE_BAD_CONFIG', `${source}: not valid YAML: ${(err as Error).message.split('\n')[0]}`, { detail: { key: '(yaml)' } });
  }
  return compileRules(doc ?? {}, source, createHash('sha256').update(text).digest('hex'));
}

/** Check an already parsed document (tests and embedders can pass objects). */
export function compileRules(doc: unknown, source = 'rules', hash = createHash('sha256').update(JSON.stringify(doc)).digest('hex')): RuleSet {
  if (!isMap(doc)) fail(source, {}, '(top level)', 'must be a mapping with "rules" and optional "notifiers"');
  for (const k of Object.keys(doc)) if (k !== 'rules' && k !== 'notifiers') fail(source, {}, k, 'unknown key (allowed: rules, notifiers)');
  const notifiers = new Map<string, NotifierSpec>();
  if (doc.notifiers !== undefined && doc.notifiers !== null) {
    if (!isMap(doc.notifiers)) fail(source, {}, 'notifiers', 'must be a mapping of name to notifier');
    for (const [name, spec] of Object.entries(doc.notifiers)) notifiers.set(name, parseNotifier(name, spec, source));
  }
  const list = doc.rules ?? [];
  if (!Array.isArray(list)) fail(source, {}, 'rules', 'must be a list of rules');
  const ids = new Set<string>();
  const rules = list.map((r, i) => parseRule(r, i, ids, notifiers, source));
  return { rules, notifiers, hash };
}

/** The short human form of a rule's condition, e.g. "temperature > 30 for 30s". */
export function describeRule(rule: Rule): string {
  const what = rule.input.kind === 'raw' ? rule.input.metric : rule.input.kind === 'agg' ? `telemetry_${rule.input.window}.${rule.input.metric}_${rule.input.stat}` : 'any metric';
  const c = rule.cond;
  const dur = (ms: number) => (ms % 60_000 === 0 && ms > 0 ? `${ms / 60_000}m` : `${ms / 1000}s`);
  const hold = rule.forMs > 0 ? ` for ${dur(rule.forMs)}` : '';
  switch (c.kind) {
    case 'absent':
      return `no ${what} for ${dur(c.ms)}`;
    case 'above':
      return `${what} > ${c.hi}${hold}${c.clearHi !== undefined ? ` (clears < ${c.clearHi})` : ''}`;
    case 'below':
      return `${what} < ${c.lo}${hold}${c.clearLo !== undefined ? ` (clears > ${c.clearLo})` : ''}`;
    case 'outside':
      return `${what} outside [${c.lo}, ${c.hi}]${hold}${c.clearLo !== undefined ? ` (clears inside [${c.clearLo}, ${c.clearHi}])` : ''}`;
  }
}

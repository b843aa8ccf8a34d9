/** The alert rules file: parsing, compilation, and refusals that name the rule and the key. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeRule, parseRules } from '../../cloud/alert-rules.js';
import { SluiceError } from '../../protocols/errors.js';

const SAMPLE = `
rules:
  - id: hot
    metric: temperature
    devices: "greenhouse-*"
    tags: { room: "a*" }
    above: 30
    for: 30s
    clear: 28
    severity: critical
    notify: [ops-webhook]
  - id: silent
    metric: any
    absent: 5m
    severity: warning
  - id: cold-avg
    on: telemetry_1m.temperature_mean
    below: 5
    clear: 7
  - id: band
    metric: humidity
    devices: [a-*, b-?]
    outside: [30, 70]
    clear: [35, 65]
    notify: local-mqtt
notifiers:
  ops-webhook: { webhook: http://127.0.0.1:9999/hook, headers: { X-Team: ops } }
  local-mqtt: { mqtt: mqtt://127.0.0.1:1883, topic: "alerts/{device}/{rule}" }
  audit: { log: warn }
`;

function refusal(text: string): SluiceError {
  try {
    parseRules(text, 'rules.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(SluiceError);
    return err as SluiceError;
  }
  throw new Error('expected the rules to be refused');
}

describe('rules file', () => {
  it('compiles the sample: inputs, conditions, globs, notifiers', () => {
    const set = parseRules(SAMPLE, 'rules.yaml');
    expect(set.rules.map((r) => r.id)).toEqual(['hot', 'silent', 'cold-avg', 'band']);
    const [hot, silent, cold, band] = set.rules;
    expect(hot.input).toEqual({ kind: 'raw', metric: 'temperature' });
    expect(hot.cond).toEqual({ kind: 'above', hi: 30, clearHi: 28 });
    expect(hot.forMs).toBe(30_000);
    expect(hot.severity).toBe('critical');
    expect(hot.deviceRe.test('greenhouse-1')).toBe(true);
    expect(hot.deviceRe.test('xgreenhouse-1')).toBe(false);
    expect(hot.tags[0].re.test('a17')).toBe(true);
    expect(silent.input).toEqual({ kind: 'any' });
    expect(silent.cond).toEqual({ kind: 'absent', ms: 300_000 });
    expect(cold.input).toEqual({ kind: 'agg', window: '1m', metric: 'temperature', stat: 'mean' });
    expect(cold.cond).toEqual({ kind: 'below', lo: 5, clearLo: 7 });
    expect(band.deviceRe.test('b-7')).toBe(true);
    expect(band.deviceRe.test('b-77')).toBe(false);
    expect(band.notify).toEqual(['local-mqtt']);
    expect(set.notifiers.get('ops-webhook')).toMatchObject({ kind: 'webhook', headers: { 'x-team': 'ops' }, timeoutMs: 10_000 });
    expect(set.notifiers.get('local-mqtt')).toMatchObject({ kind: 'mqtt', qos: 1, retain: false });
    expect(set.notifiers.get('audit')).toEqual({ name: 'audit', kind: 'log', level: 'warn' });
    expect(describeRule(hot)).toBe('temperature > 30 for 30s (clears < 28)');
    expect(parseRules(SAMPLE).hash).toBe(set.hash);
  });

  it('the shipped sample (cloud/rules.sample.yaml) is valid', () => {
    const set = parseRules(readFileSync(new URL('../../cloud/rules.sample.yaml', import.meta.url), 'utf8'), 'rules.sample.yaml');
    expect(set.rules.map((r) => r.id)).toEqual(['hot', 'frost', 'humidity-band', 'silent']);
    expect([...set.notifiers.keys()]).toEqual(['ops-webhook', 'local-mqtt', 'audit-log']);
  });

  it('an empty file is no rules', () => {
    expect(parseRules('').rules).toEqual([]);
    expect(parseRules('rules: []').rules).toEqual([]);
  });

  it.each([
    ['  - id: r1\n    metric: temperature\n    above: hot', 'r1', 'above', /must be a finite number/],
    ['  - id: r1\n    metric: temperature\n    above: 30\n    clear: 31', 'r1', 'clear', /must not be above/],
    ['  - id: r1\n    metric: temperature\n    below: 3\n    clear: 1', 'r1', 'clear', /must not be below/],
    ['  - id: r1\n    metric: temperature\n    above: 30\n    below: 3', 'r1', 'below', /exactly one of/],
    ['  - id: r1\n    metric: temperature', 'r1', 'above', /exactly one of/],
    ['  - id: r1\n    metric: temperature\n    above: 30\n    for: 30', 'r1', 'for', /has no unit/],
    ['  - id: r1\n    metric: temperature\n    above: 30\n    for: soon', 'r1', 'for', /not a duration/],
    ['  - id: r1\n    metric: temperature\n    above: 30\n    severity: urgent', 'r1', 'severity', /info, warning, critical/],
    ['  - id: r1\n    metric: temperature\n    above: 30\n    notify: [pager]', 'r1', 'notify', /no notifier named "pager"/],
    ['  - id: r1\n    metric: temperature\n    above: 30\n    treshold: 3', 'r1', 'treshold', /unknown key/],
    ['  - id: r1\n    metric: any\n    above: 30', 'r1', 'metric', /only works with absent/],
    ['  - id: r1\n    metric: \'x"; DROP\'\n    above: 30', 'r1', 'metric', /not a metric name/],
    ['  - id: r1\n    on: telemetry_1m.temperature\n    above: 30', 'r1', 'on', /telemetry_<window>/],
    ['  - id: r1\n    absent: 5m\n    for: 1m', 'r1', 'for', /does not apply/],
    ['  - id: r1\n    metric: h\n    outside: [70, 30]', 'r1', 'outside', /low bound/],
    ['  - id: r1\n    metric: h\n    outside: [30, 70]\n    clear: [20, 60]', 'r1', 'clear', /inside/],
    ['  - id: r1\n    metric: h\n    above: 1\n    devices: "a/b"', 'r1', 'devices', /not a device glob/],
    ['  - id: r1\n    on: telemetry_1m.t_mean\n    above: 1\n    tags: { room: a }', 'r1', 'tags', /no tags/],
    ['  - id: r1\n    metric: t\n    above: 1\n  - id: r1\n    metric: t\n    below: 1', 'r1', 'id', /used by two rules/],
    ['  - metric: t\n    above: 1', 'rules[0]', 'id', /is required/],
  ])('refuses %j naming rule %s and key %s', (body, rule, key, msg) => {
    const err = refusal(`rules:\n${body}\n`);
    expect(err.code).toBe('SLUICE_BAD_CONFIG');
    expect(err.detail).toMatchObject({ rule, key });
    expect(err.message).toContain(`rule "${rule}"`);
    expect(err.message).toContain(`key "${key}"`);
    expect(err.message).toMatch(msg);
    expect(err.message.startsWith('rules.yaml: ')).toBe(true);
  });

  it.each([
    ['hook: { webhook: ftp://x }', 'hook', 'webhook'],
    ['hook: { webhook: http://x, retries: 3 }', 'hook', 'retries'],
    ['m: { mqtt: mqtt://x, topic: "alerts/#" }', 'm', 'topic'],
    ['m: { mqtt: mqtt://x, topic: "alerts/{host}" }', 'm', 'topic'],
    ['m: { mqtt: mqtt://x, qos: 2 }', 'm', 'qos'],
    ['l: { log: loud }', 'l', 'log'],
    ['both: { log: warn, webhook: http://x }', 'both', 'log'],
  ])('refuses notifier %j naming it and the key', (body, notifier, key) => {
    const err = refusal(`notifiers:\n  ${body}\n`);
    expect(err.detail).toMatchObject({ notifier, key });
    expect(err.message).toContain(`notifier "${notifier}"`);
  });

  it('refuses bad YAML and unknown top-level keys', () => {
    expect(refusal('rules: [').detail).toMatchObject({ key: '(yaml)' });
    expect(refusal('rule: []').detail).toMatchObject({ key: 'rule' });
  });
});

/**
 * The alert state machine in event time: for-duration, hysteresis, absent data (event time and wall
 * clock), window aggregates, late readings, and determinism of transitions and ids.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AlertEngine, toObservations, type Evaluation, type Observation, type Transition } from '../../cloud/alert-engine.js';
import { parseRules } from '../../cloud/alert-rules.js';
import type { AggRecord, RawRecord } from '../../protocols/batch.js';

const T0 = Date.parse('2024-11-21T14:00:00Z');
const S = 1000;
const MIN = 60_000;

function engine(yaml: string): AlertEngine {
  return new AlertEngine(parseRules(yaml, 'test'));
}

/** Evaluate and commit, return the transitions (what the service does once the write succeeded). */
function feed(e: AlertEngine, obs: Observation[], receivedAt = T0): Transition[] {
  const ev = e.evaluate(obs, receivedAt);
  e.commit(ev);
  return ev.transitions;
}

const temp = (ts: number, v: number, device = 'gh-1', extra: Record<string, number | boolean> = {}): Observation => ({ device, ts, values: { temperature: v, ...extra } });
const brief = (ts: Transition[]) => ts.map((t) => `${t.to}@${(t.ts - T0) / S}s`);

const HOT = `
rules:
  - id: hot
    metric: temperature
    devices: "gh-*"
    above: 30
    for: 30s
    clear: 28
    severity: critical
`;

describe('threshold with for-duration', () => {
  it('fires only once the condition held for 30 s of event time', () => {
    const e = engine(HOT);
    expect(brief(feed(e, [temp(T0, 25), temp(T0 + 10 * S, 31)]))).toEqual(['pending@10s']);
    expect(brief(feed(e, [temp(T0 + 20 * S, 32), temp(T0 + 39 * S, 31)]))).toEqual([]);
    const fired = feed(e, [temp(T0 + 40 * S, 30.5)]);
    expect(brief(fired)).toEqual(['firing@40s']);
    expect(fired[0]).toMatchObject({ rule: 'hot', device: 'gh-1', severity: 'critical', from: 'pending', value: 30.5, threshold: 30, since: T0 + 10 * S, firedAt: T0 + 40 * S });
    expect(fired[0].message).toBe('temperature 30.5 above 30 for 30s on gh-1');
    expect(e.get('hot', 'gh-1')).toMatchObject({ state: 'firing', since: T0 + 10 * S, firedAt: T0 + 40 * S });
  });

  it('a dip below the threshold while pending cancels, and the next breach starts over', () => {
    const e = engine(HOT);
    const ts = feed(e, [temp(T0, 31), temp(T0 + 20 * S, 29.9), temp(T0 + 25 * S, 31), temp(T0 + 50 * S, 31), temp(T0 + 55 * S, 31)]);
    expect(brief(ts)).toEqual(['pending@0s', 'ok@20s', 'pending@25s', 'firing@55s']);
    // The cancelled incident and the fired one have different ids; pending and firing share one.
    expect(ts[0].id).toBe(ts[1].id);
    expect(ts[2].id).toBe(ts[3].id);
    expect(ts[2].id).not.toBe(ts[0].id);
  });

  it('wall-clock time does not fire a threshold rule: event time does', () => {
    const e = engine(HOT);
    feed(e, [temp(T0, 31)]);
    expect(e.due(T0 + 3_600_000).transitions).toEqual([]);
    expect(e.get('hot', 'gh-1')?.state).toBe('pending');
  });

  it('devices outside the glob are not evaluated', () => {
    const e = engine(HOT);
    expect(feed(e, [temp(T0, 99, 'other-1'), temp(T0 + MIN, 99, 'other-1')])).toEqual([]);
    expect(e.size).toBe(0);
  });
});

describe('hysteresis', () => {
  it('a signal oscillating between clear and the threshold fires once and never flaps', () => {
    const e = engine(HOT.replace('for: 30s', 'for: 0s'));
    const obs = Array.from({ length: 600 }, (_, i) => temp(T0 + i * S, 29.5 + 1.5 * Math.sin(i / 3))); // 28.0 .. 31.0
    const ts = feed(e, obs);
    expect(ts.map((t) => t.to)).toEqual(['firing']);
    // Only a reading below clear (28) resolves it, once.
    const after = feed(e, [temp(T0 + 601 * S, 28.1), temp(T0 + 602 * S, 27.9), temp(T0 + 603 * S, 27), temp(T0 + 604 * S, 29)]);
    expect(brief(after)).toEqual(['resolved@602s']);
    expect(after[0]).toMatchObject({ value: 27.9, threshold: 28, firedAt: ts[0].ts });
  });

  it('property: firing and resolved alternate, each firing above 30, each resolve below 28', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 20, max: 40, noNaN: true }), { minLength: 1, maxLength: 300 }), (values) => {
        const e = engine(HOT.replace('for: 30s', 'for: 0s'));
        const ts = feed(e, values.map((v, i) => temp(T0 + i * S, v)));
        let expectFiring = true;
        for (const t of ts) {
          expect(t.to).toBe(expectFiring ? 'firing' : 'resolved');
          if (t.to === 'firing') expect(t.value).toBeGreaterThan(30);
          else expect(t.value).toBeLessThan(28);
          expectFiring = !expectFiring;
        }
        // A reference model of the same rule gives the same number of transitions.
        let firing = false;
        let n = 0;
        for (const v of values) {
          if (!firing && v > 30) (firing = true), n++;
          else if (firing && v < 28) (firing = false), n++;
        }
        expect(ts).toHaveLength(n);
      }),
      { numRuns: 200 },
    );
  });

  it('below and outside rules resolve only past their clear bounds', () => {
    const e = engine(`
rules:
  - id: cold
    metric: temperature
    below: 5
    clear: 7
  - id: band
    metric: humidity
    outside: [30, 70]
    clear: [35, 65]
`);
    const ts = feed(e, [
      temp(T0, 4),
      temp(T0 + S, 6),
      temp(T0 + 2 * S, 7.5),
      { device: 'gh-1', ts: T0 + 3 * S, values: { humidity: 71 } },
      { device: 'gh-1', ts: T0 + 4 * S, values: { humidity: 66 } },
      { device: 'gh-1', ts: T0 + 5 * S, values: { humidity: 50 } },
    ]);
    expect(ts.map((t) => `${t.rule}:${t.to}@${(t.ts - T0) / S}:${t.threshold}`)).toEqual(['cold:firing@0:5', 'cold:resolved@2:7', 'band:firing@3:70', 'band:resolved@5:65']);
  });
});

describe('absent data', () => {
  const SILENT = `
rules:
  - id: silent
    metric: any
    absent: 5m
    severity: warning
  - id: no-humidity
    metric: humidity
    absent: 2m
`;

  it('fires from a device’s own later readings (event time) and resolves at the reading', () => {
    const e = engine(SILENT);
    feed(e, [temp(T0, 20)]);
    const ts = feed(e, [temp(T0 + 7 * MIN, 21)]);
    expect(ts.map((t) => `${t.rule}:${t.to}@${(t.ts - T0) / MIN}m`)).toEqual(['silent:firing@5m', 'silent:resolved@7m']);
    expect(ts[0].id).toBe(ts[1].id);
    expect(ts[0].message).toMatch(/^no reading from gh-1 for 5m/);
  });

  it('a metric-specific absent rule fires from the device’s other metrics', () => {
    const e = engine(SILENT);
    feed(e, [{ device: 'd', ts: T0, values: { humidity: 50, temperature: 20 } }]);
    const ts = feed(e, [temp(T0 + MIN, 20, 'd'), temp(T0 + 3 * MIN, 20, 'd')]);
    expect(ts.map((t) => `${t.rule}:${t.to}@${(t.ts - T0) / MIN}m`)).toEqual(['no-humidity:firing@2m']);
    const back = feed(e, [{ device: 'd', ts: T0 + 4 * MIN, values: { humidity: 51 } }]);
    expect(back.map((t) => `${t.rule}:${t.to}`)).toEqual(['no-humidity:resolved']);
  });

  it('a fully silent device fires on the wall clock, with the id the event-time path would use', () => {
    const e = engine(SILENT);
    const received = T0 + 2 * S;
    feed(e, [temp(T0, 20, 'gh-1', { humidity: 50 })], received);
    expect(e.nextDeadline()).toBe(received + 2 * MIN);
    expect(e.due(received + 2 * MIN - 1).transitions).toEqual([]);
    const wall = e.due(received + 5 * MIN);
    expect(wall.transitions.map((t) => `${t.rule}:${t.to}@${(t.ts - T0) / MIN}m`).sort()).toEqual(['no-humidity:firing@2m', 'silent:firing@5m']);

    const other = engine(SILENT);
    feed(other, [temp(T0, 20, 'gh-1', { humidity: 50 })], received);
    const eventTime = other.evaluate([temp(T0 + 6 * MIN, 20)], T0 + 6 * MIN).transitions.find((t) => t.rule === 'silent' && t.to === 'firing')!;
    expect(wall.transitions.find((t) => t.rule === 'silent')!.id).toBe(eventTime.id);

    e.commit(wall);
    expect(e.due(T0 + 60 * MIN).transitions).toEqual([]); // fires once
    expect(e.nextDeadline()).toBeUndefined();
    const back = feed(e, [temp(T0 + 9 * MIN, 20, 'gh-1', { humidity: 50 })], T0 + 9 * MIN);
    expect(back.map((t) => `${t.rule}:${t.to}`)).toEqual(['silent:resolved', 'no-humidity:resolved']);
  });

  it('a device never seen is not absent', () => {
    const e = engine(SILENT);
    expect(e.due(T0 + 24 * 60 * MIN).transitions).toEqual([]);
  });
});

describe('inputs and ordering', () => {
  it('window aggregates drive `on:` rules at the window end; raw readings do not', () => {
    const e = engine(`
rules:
  - id: avg-hot
    on: telemetry_1m.temperature_mean
    above: 25
  - id: raw-hot
    metric: temperature
    above: 25
`);
    const aggs: AggRecord[] = [0, 1, 2].map((m) => ({ seq: 10 + m, dev: 'gh-1', win: '1m', start: T0 + m * MIN, end: T0 + (m + 1) * MIN, rev: 0, aggs: { temperature: { count: 6, mean: 24 + m, min: 20, max: 30 + m } } }));
    const recs: RawRecord[] = [{ seq: 1, dev: 'gh-1', ts: T0, vals: { temperature: 24 } }];
    const obs = toObservations(recs, aggs);
    expect(obs.map((o) => o.window ?? 'raw')).toEqual(['raw', '1m', '1m', '1m']);
    const ts = feed(e, obs);
    expect(ts.map((t) => `${t.rule}:${t.to}@${(t.ts - T0) / MIN}m=${t.value}`)).toEqual(['avg-hot:firing@3m=26']);
    expect(ts[0].metric).toBe('telemetry_1m.temperature_mean');
  });

  it('late readings (older than the newest evaluated) are skipped and counted', () => {
    const e = engine(HOT.replace('for: 30s', 'for: 0s'));
    feed(e, [temp(T0 + MIN, 20)]);
    const ev = e.evaluate([temp(T0, 35)], T0);
    expect(ev.transitions).toEqual([]);
    expect(ev.late).toBe(1);
  });

  it('tag matchers select readings by tag glob', () => {
    const e = engine(`
rules:
  - id: room-a
    metric: temperature
    tags: { room: "a*" }
    above: 30
`);
    const ts = feed(e, [
      { device: 'd', ts: T0, values: { temperature: 40 }, tags: { room: 'b1' } },
      { device: 'd', ts: T0 + S, values: { temperature: 40 } },
      { device: 'd', ts: T0 + 2 * S, values: { temperature: 40 }, tags: { room: 'a1' } },
    ]);
    expect(brief(ts)).toEqual(['firing@2s']);
  });

  it('booleans count as 0/1', () => {
    const e = engine(`
rules:
  - id: door
    metric: door_open
    above: 0.5
    for: 5m
`);
    const ts = feed(e, [0, 1, 2, 3, 4, 5, 6].map((m) => ({ device: 'd', ts: T0 + m * MIN, values: { door_open: m > 0 && m < 7 } })));
    expect(ts.map((t) => `${t.to}@${(t.ts - T0) / MIN}m`)).toEqual(['pending@1m', 'firing@6m']);
  });
});

describe('determinism (what makes retries and replays safe)', () => {
  it('evaluate does not change the engine; the same input gives the same transitions and ids', () => {
    const e = engine(HOT);
    feed(e, [temp(T0, 31)]);
    const input = [temp(T0 + 30 * S, 31), temp(T0 + 40 * S, 27)];
    const a: Evaluation = e.evaluate(input, T0);
    const b: Evaluation = e.evaluate(input, T0);
    expect(a.transitions).toEqual(b.transitions);
    expect(brief(a.transitions)).toEqual(['firing@30s', 'resolved@40s']);
    expect(e.get('hot', 'gh-1')?.state).toBe('pending');
    e.commit(a);
    // Re-evaluating the newest reading after commit changes nothing.
    expect(e.evaluate([temp(T0 + 40 * S, 27)], T0).transitions).toEqual([]);
  });

  it('a state restored from JSON continues a pending for-duration where it was', () => {
    const e = engine(HOT);
    feed(e, [temp(T0, 31)]);
    const restored = engine(HOT);
    restored.load(JSON.parse(JSON.stringify(e.list())));
    expect(brief(feed(restored, [temp(T0 + 30 * S, 31)]))).toEqual(['firing@30s']);
  });

  it('a rules reload keeps the state of rules that stay and drops the others', () => {
    const e = engine(HOT + `  - id: other\n    metric: humidity\n    above: 90\n`);
    feed(e, [temp(T0, 31), { device: 'gh-1', ts: T0, values: { humidity: 95 } }]);
    const dropped = e.setRules(parseRules(HOT.replace('clear: 28', 'clear: 27')));
    expect(dropped).toEqual(['other!gh-1']);
    expect(e.get('hot', 'gh-1')?.state).toBe('pending');
    expect(brief(feed(e, [temp(T0 + 30 * S, 31), temp(T0 + 31 * S, 27.5)]))).toEqual(['firing@30s']);
  });
});

/**
 * The alert tier on the real ingest path (HwmStore on LevelDB in a temp dir → ingestBatch →
 * AlertService), a recording sink, a real webhook receiver, a real aedes broker and a manual clock:
 * replays and crashes never fire twice, restarts resume pending timers and undelivered notifications,
 * invalid rules are refused while the previous rules keep working.
 */
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { writeFile } from 'node:fs/promises';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HwmStore, type SublevelOp } from '../../cloud/hwm-store.js';
import type { RawRecord } from '../../protocols/batch.js';
import { ManualClock } from '../support/cloud-clock.js';
import { FakeSink, startAlertRig, startWebhookReceiver, type AlertRig, type WebhookReceiver } from '../support/cloud-alerts.js';
import { tempDir, until } from '../support/tmp.js';

const S = 1000;
const MIN = 60_000;
let dir: { path: string; remove(): Promise<void> };
let hook: WebhookReceiver;
let clock: ManualClock;
let rig: AlertRig | undefined;
let T0: number;

const rules = (url: string, extra = '', more = '') => `
rules:
  - id: hot
    metric: temperature
    devices: "gh-*"
    above: 30
    clear: 28
    severity: critical
    notify: [ops]${extra}
${more}notifiers:
  ops: { webhook: ${url} }
`;

const reading = (ts: number, temperature: number, dev = 'gh-1'): Omit<RawRecord, 'seq'> => ({ dev, ts, vals: { temperature } });

async function delivered(n: number): Promise<void> {
  await until(`${n} webhook deliveries`, () => hook.received.length >= n && rig!.service.pendingNotifications() === 0);
  expect(hook.received).toHaveLength(n);
}

const transitions = async (r: AlertRig) => (await r.metrics.registry.getSingleMetricAsString('sluice_cloud_alert_transitions_total')).split('\n').filter((l) => !l.startsWith('#'));

beforeEach(async () => {
  dir = await tempDir('sluice-alerts-');
  hook = await startWebhookReceiver();
  clock = new ManualClock();
  T0 = clock.now();
});

afterEach(async () => {
  await rig?.stop();
  rig = undefined;
  await hook.close();
  await dir.remove();
});

describe('replays and crashes never fire twice', () => {
  it('a replayed or partly replayed batch does not reach the engine', async () => {
    rig = await startAlertRig({ dir: dir.path, rules: rules(hook.url), clock });
    const batch: RawRecord[] = [25, 31, 32].map((v, i) => ({ seq: i + 1, ...reading(T0 + i * S, v) }));
    expect((await rig.send(1, batch)).status).toBe(200);
    await delivered(1);
    expect(hook.received[0].body).toMatchObject({ rule: 'hot', device: 'gh-1', state: 'firing', value: 31, threshold: 30, severity: 'critical', ts: T0 + S });
    expect(hook.received[0].headers['idempotency-key']).toBe(`${hook.received[0].body.id}:firing`);

    // The gateway resends the whole batch (ack lost), then an overlapping one.
    expect((await rig.send(1, batch)).status).toBe(200);
    expect((await rig.send(2, [...batch.slice(1), { seq: 4, ...reading(T0 + 3 * S, 27) }])).status).toBe(200);
    await delivered(2);
    expect(hook.received.map((h) => h.body.state)).toEqual(['firing', 'resolved']);
    expect(hook.received[1].body.id).toBe(hook.received[0].body.id);
    expect(rig.sink.alertLines()).toHaveLength(2);
    expect(await transitions(rig)).toEqual(['sluice_cloud_alert_transitions_total{rule="hot",state="firing"} 1', 'sluice_cloud_alert_transitions_total{rule="hot",state="resolved"} 1']);
  });

  it('InfluxDB down: nothing is evaluated until the write succeeds, then the alert fires once', async () => {
    const sink = new FakeSink();
    rig = await startAlertRig({ dir: dir.path, rules: rules(hook.url), clock, sink });
    sink.failNext = 2;
    const recs = [reading(T0, 31)];
    expect((await rig.ingest(recs, { first: 1 })).status).toBe(503);
    expect((await rig.ingest(recs, { first: 1 })).status).toBe(503);
    expect(rig.service.engine.get('hot', 'gh-1')).toBeUndefined();
    expect((await rig.ingest(recs, { first: 1 })).status).toBe(200);
    await delivered(1);
  });

  it('a crash after the InfluxDB write but before the mark is stored: the resent batch fires exactly once', async () => {
    let crash = true;
    class CrashingStore extends HwmStore {
      override async set(gw: string, inc: string, hw: number, now?: number, ops?: SublevelOp[]): Promise<void> {
        if (crash) {
          crash = false;
          throw new Error('power cut before the LevelDB batch');
        }
        return super.set(gw, inc, hw, now, ops);
      }
    }
    rig = await startAlertRig({ dir: dir.path, rules: rules(hook.url), clock, store: (d) => new CrashingStore(d) });
    const batch: RawRecord[] = [{ seq: 1, ...reading(T0, 31) }];
    expect((await rig.send(1, batch)).status).toBe(503);
    // Points were written, but no state, no outbox entry, no mark: nothing was notified.
    expect(rig.sink.lines).toHaveLength(1);
    expect(rig.service.pendingNotifications()).toBe(0);
    expect(rig.service.engine.get('hot', 'gh-1')).toBeUndefined();
    await rig.restart();
    expect((await rig.send(1, batch)).status).toBe(200);
    expect((await rig.send(1, batch)).status).toBe(200);
    await delivered(1);
    expect(rig.sink.alertLines()).toHaveLength(1);
  });

  it('a crash right after the mark, state and outbox were stored: the notification goes out after restart, once', async () => {
    let crashAfter = true;
    class CrashAfterStore extends HwmStore {
      override async set(gw: string, inc: string, hw: number, now?: number, ops?: SublevelOp[]): Promise<void> {
        await super.set(gw, inc, hw, now, ops);
        if (crashAfter) {
          crashAfter = false;
          throw new Error('crash after the LevelDB batch');
        }
      }
    }
    hook.failWith = [503]; // the first attempt, if any, fails
    rig = await startAlertRig({ dir: dir.path, rules: rules(hook.url), clock, store: (d) => new CrashAfterStore(d) });
    const batch: RawRecord[] = [{ seq: 1, ...reading(T0, 31) }];
    expect((await rig.send(1, batch)).status).toBe(503);
    expect(rig.service.pendingNotifications()).toBe(0); // not committed in memory: the "process died"
    hook.failWith = [];
    await rig.restart();
    expect(rig.service.engine.get('hot', 'gh-1')?.state).toBe('firing');
    await delivered(1);
    expect((await rig.send(1, batch)).status).toBe(200); // the gateway resends: a replay now
    await until('history written', () => rig!.sink.alertLines().length >= 1);
    expect(hook.received).toHaveLength(1);
    expect(rig.sink.alertLines()).toHaveLength(1);
  });
});

describe('restarts resume state and timers', () => {
  it('a pending for-duration continues across a restart', async () => {
    rig = await startAlertRig({ dir: dir.path, rules: rules(hook.url, '\n    for: 30s'), clock });
    await rig.ingest([reading(T0, 31), reading(T0 + 10 * S, 31)]);
    expect(rig.service.engine.get('hot', 'gh-1')?.state).toBe('pending');
    await rig.restart();
    expect(rig.service.engine.get('hot', 'gh-1')).toMatchObject({ state: 'pending', since: T0 });
    await rig.ingest([reading(T0 + 30 * S, 31)]);
    await delivered(1);
    expect(hook.received[0].body).toMatchObject({ state: 'firing', since: T0, ts: T0 + 30 * S });
  });

  it('an absent-data deadline survives a restart and fires on the wall clock, once', async () => {
    const silent = `
rules:
  - id: silent
    metric: any
    absent: 5m
    notify: [ops]
notifiers:
  ops: { webhook: ${hook.url} }
`;
    rig = await startAlertRig({ dir: dir.path, rules: silent, clock });
    await rig.ingest([reading(T0, 20)]);
    clock.advance(MIN);
    await rig.restart();
    expect(clock.pending()).toEqual([T0 + 5 * MIN]);
    clock.advance(4 * MIN - 1);
    await rig.service.idle();
    expect(rig.service.engine.get('silent', 'gh-1')?.state).toBe('ok');
    clock.advance(1);
    await rig.service.idle();
    await delivered(1);
    expect(hook.received[0].body).toMatchObject({ rule: 'silent', state: 'firing', ts: T0 + 5 * MIN });
    clock.advance(60 * MIN);
    await rig.service.idle();
    // The device reports again: resolved, once.
    await rig.ingest([reading(T0 + 70 * MIN, 20)]);
    await delivered(2);
    expect(hook.received.map((h) => h.body.state)).toEqual(['firing', 'resolved']);
  });

  it('after a cloud outage, silent devices get the start grace before the wall clock fires', async () => {
    const silent = `rules:\n  - id: silent\n    absent: 5m\n`;
    rig = await startAlertRig({ dir: dir.path, rules: silent, clock });
    await rig.ingest([reading(T0, 20)]);
    await rig.stop();
    clock.advance(60 * MIN); // the cloud was down for an hour
    rig = await startAlertRig({ dir: dir.path, rules: silent, clock, absentStartGraceMs: 30 * S });
    expect(clock.pending()).toEqual([T0 + 60 * MIN + 30 * S]);
    // The gateway delivers its backlog within the grace: no false alarm, the event time speaks.
    await rig.ingest([reading(T0 + 2 * MIN, 20), reading(T0 + 4 * MIN, 20)], { first: 2 });
    clock.advance(30 * S);
    await rig.service.idle();
    expect(rig.service.engine.get('silent', 'gh-1')?.state).toBe('ok');
  });
});

describe('notifications', () => {
  it('failed webhook deliveries are counted, retried with backoff, and survive a restart', async () => {
    rig = await startAlertRig({ dir: dir.path, rules: rules(hook.url), clock });
    hook.failWith = [503, 500];
    await rig.ingest([reading(T0, 31)]);
    await until('first failure', async () => (await rig!.metrics.registry.getSingleMetricAsString('sluice_cloud_notification_failures_total')).includes('target="ops"} 1'));
    expect(rig.service.pendingNotifications('ops')).toBe(1);
    await until('a retry timer', () => clock.pending().length === 1);
    expect(clock.pending()[0] - clock.now()).toBe(1000); // Retry-After: 1
    // Restart with the notification still pending: it is on disk, and goes out again.
    await rig.restart();
    expect(rig.service.pendingNotifications('ops')).toBe(1);
    await until('second failure', () => hook.failWith.length === 0 && clock.pending().length === 1);
    clock.advance(1000);
    await delivered(1);
    expect(hook.received[0].body.state).toBe('firing');
    expect(hook.received[0].headers['idempotency-key']).toBe(`${hook.received[0].body.id}:firing`);
    expect(rig.service.pendingNotifications()).toBe(0);
  });

  it('a webhook that refuses (4xx) is dropped and counted; ingest never waits for deliveries', async () => {
    rig = await startAlertRig({ dir: dir.path, rules: rules(hook.url), clock });
    hook.failWith = [400];
    await rig.ingest([reading(T0, 31)]);
    await until('dropped', async () => (await rig!.metrics.registry.getSingleMetricAsString('sluice_cloud_notifications_dropped_total')).includes('reason="rejected"} 1'));
    expect(hook.received).toHaveLength(0);
  });

  it('publishes over MQTT (mqtt.js → aedes) and logs through pino', async () => {
    const broker = await Aedes.createBroker();
    const server = createNetServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'test-sub' });
    const got: { topic: string; body: any }[] = [];
    sub.on('message', (topic, payload) => got.push({ topic, body: JSON.parse(payload.toString()) }));
    await sub.subscribeAsync('alerts/#', { qos: 1 });
    const logLines: any[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _enc, cb) {
          for (const l of String(chunk).split('\n')) if (l) logLines.push(JSON.parse(l));
          cb();
        },
      }),
    );
    try {
      const text = `
rules:
  - id: hot
    metric: temperature
    above: 30
    notify: [bus, audit]
notifiers:
  bus: { mqtt: "mqtt://127.0.0.1:${port}", topic: "alerts/{device}/{rule}/{state}" }
  audit: { log: error }
`;
      rig = await startAlertRig({ dir: dir.path, rules: text, clock, logger });
      await rig.ingest([reading(T0, 35), reading(T0 + S, 20)]);
      await until('two MQTT notifications', () => got.length >= 2);
      expect(got.map((g) => g.topic)).toEqual(['alerts/gh-1/hot/firing', 'alerts/gh-1/hot/resolved']);
      expect(got[0].body).toMatchObject({ rule: 'hot', device: 'gh-1', state: 'firing', value: 35 });
      await until('log notifications', () => logLines.filter((l) => l.notifier === 'audit').length === 2);
      expect(logLines.find((l) => l.notifier === 'audit').level).toBe(50);
    } finally {
      await rig?.stop();
      rig = undefined;
      await sub.endAsync();
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('rules reload', () => {
  it('an invalid rules file is refused naming rule and key; the previous rules keep working; a valid one is taken without losing state', async () => {
    rig = await startAlertRig({ dir: dir.path, rules: rules(hook.url, '\n    for: 30s'), clock, watch: true });
    await rig.ingest([reading(T0, 31)]);
    expect(rig.service.engine.get('hot', 'gh-1')?.state).toBe('pending');

    await writeFile(rig.rulesFile, rules(hook.url, '\n    for: 30s').replace('clear: 28', 'clear: 33'));
    const status = await until('the reload error', () => rig!.service.status().lastError);
    expect(status).toMatchObject({ rule: 'hot', key: 'clear' });
    expect(status.message).toContain('rule "hot": key "clear"');
    expect(rig.service.status().rules.map((r) => r.id)).toEqual(['hot']);
    // The previous rules are still active: the pending alert fires on schedule.
    await rig.ingest([reading(T0 + 30 * S, 31)]);
    await delivered(1);

    // SIGHUP path (reload()) with a still-broken file.
    const again = await rig.service.reload();
    expect(again.ok).toBe(false);
    if (!again.ok) expect(again.error.detail).toMatchObject({ rule: 'hot', key: 'clear' });

    // A valid change (new threshold and a new rule) is picked up by the watcher; the firing state stays.
    await writeFile(rig.rulesFile, rules(hook.url, '\n    for: 30s', '  - id: wet\n    metric: humidity\n    above: 90\n').replace('clear: 28', 'clear: 25'));
    await until('the new rules', () => rig!.service.status().rules.length === 2 && !rig!.service.status().lastError);
    expect(rig.service.engine.get('hot', 'gh-1')?.state).toBe('firing');
    await rig.ingest([reading(T0 + 40 * S, 26)]); // below 28, not below the new clear 25
    expect(rig.service.engine.get('hot', 'gh-1')?.state).toBe('firing');
    await rig.ingest([reading(T0 + 50 * S, 24)]);
    await delivered(2);
    expect(hook.received.map((h) => h.body.state)).toEqual(['firing', 'resolved']);
  });
});

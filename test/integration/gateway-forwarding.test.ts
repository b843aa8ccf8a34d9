/**
 * Gateway in-process on real sockets (aedes on TCP, LevelDB in a temp dir, mqtt.js clients) against
 * a scripted cloud: ordering, PUBACK-after-commit, bad payloads, and every cloud response class.
 */
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Gateway, type GatewayConfig } from '../../gateway/gateway.js';
import { runCli } from '../support/deploy-cli.js';
import { ScriptedCloud } from '../support/scripted-cloud.js';
import { tempDir, until } from '../support/tmp.js';

let cloud: ScriptedCloud;
let dir: { path: string; remove(): Promise<void> };
let gw: Gateway;
const clients: MqttClient[] = [];

async function startGateway(over: Partial<GatewayConfig> = {}): Promise<Gateway> {
  const g = new Gateway({
    id: 'gw1',
    dataDir: dir.path,
    mqtt: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    cloud: { url: cloud.url, token: 't' },
    allowAnonymous: true,
    logger: pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' }),
    log: { sync: 'never' },
    forwarder: { minBackoffMs: 5, maxBackoffMs: 50, breakerCooldownMs: 50, lingerMs: 2 },
    ...over,
  });
  await g.start();
  return g;
}

async function connect(id: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(gw.mqttUrl, { clientId: id, reconnectPeriod: 0 });
  clients.push(c);
  return c;
}

function reading(seq: number, extra: Record<string, unknown> = {}) {
  return JSON.stringify({ ts: 1_700_000_000_000 + seq, seq, values: { temperature: 20 + seq / 100, door_open: seq % 2 === 0 }, ...extra });
}

/**
 * Commits made to wait for real: the cloud is down and the log's quota (under 'block') nearly used
 * up by a filler device, so new readings stay pending until acks free space; after recover() they
 * commit one by one. Broker watermarks 20 / 10.
 */
async function stallCommits(): Promise<{ filled: number; recover: () => void }> {
  let failing = true;
  cloud.script = () => (failing ? { status: 503, body: { error: 'down' }, headers: { 'retry-after': '0' } } : undefined);
  gw = await startGateway({
    log: { sync: 'never', maxGroup: 1, quotaBytes: 4000, reserveBytes: 0, whenFull: 'block' },
    broker: { highWater: 20, lowWater: 10 },
  });
  const filler = await connect('filler');
  let n = 0;
  while (!gw.log.isFull(400)) await filler.publishAsync('devices/f/telemetry', reading(++n), { qos: 1 });
  return { filled: n, recover: () => (failing = false) };
}

beforeEach(async () => {
  cloud = new ScriptedCloud();
  await cloud.start();
  dir = await tempDir();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await gw?.stop().catch(() => undefined);
  await cloud.stop();
  await dir.remove();
});

describe('gateway forwarding', () => {
  it('/status gives recent rates: readings committed while the cloud is down (backlog not shrinking), then forwarded', async () => {
    let down = true;
    cloud.script = () => (down ? { status: 503, body: { error: 'down' }, headers: { 'retry-after': '0' } } : undefined);
    gw = await startGateway();
    const status = async () => (await fetch(`${gw.httpUrl}/status`)).json();
    // In the first second there is no sample old enough for a rate.
    expect((await status()).rates).toBeNull();
    const dev = await connect('r1');
    for (let s = 1; s <= 200; s++) await dev.publishAsync('devices/r1/telemetry', reading(s), { qos: 1 });
    const st = await until('a committed rate', async () => {
      const x = await status();
      return x.rates?.committedPerSec > 0 ? x : undefined;
    });
    expect(st.log.backlogRecords).toBe(200);
    expect(st.rates.forwardedPerSec).toBe(0);
    expect(st.rates.overSec).toBeGreaterThanOrEqual(1);
    expect(st.drainEtaSec).toBeNull();
    // What the person at the console sees (the real command against this gateway).
    const cli = await runCli(['gateway', 'status', '--http', gw.httpUrl]);
    expect(cli.stderr).toBe('');
    expect(cli.stdout).toMatch(/backlog\s+200 records, \d+ bytes, oldest [\d.]+s, not shrinking/);
    expect(cli.stdout).toMatch(/rates\s+committed \d+\/s, forwarded 0\/s \(last [\d.]+ s\)/);
    expect(cli.stdout).toMatch(/group commits\s+\d+ \(writes: last [\d.]+ ms, mean [\d.]+ ms, slowest [\d.]+ ms(, \d+ slow \(log\.slowWrite\))?\)/);
    down = false;
    await until('backlog forwarded', () => gw.log.stats.backlogRecords === 0);
    const after = await status();
    // The 200 were forwarded since the oldest sample (taken at start, a few seconds ago): the rate
    // is their count over the time measured (overSec is rounded to 0.1 s, hence the tolerance).
    expect(after.rates.overSec).toBeLessThan(10);
    expect(Math.abs(after.rates.forwardedPerSec / (200 / after.rates.overSec) - 1)).toBeLessThan(0.08);
    expect(after.drainEtaSec).toBeNull();
  });

  it('times every group write (what PUBACKs wait for): /status and the /metrics histogram count the same writes', async () => {
    gw = await startGateway();
    const devs = await Promise.all(['w1', 'w2'].map(connect));
    await Promise.all(devs.map(async (c, i) => {
      for (let s = 1; s <= 50; s++) await c.publishAsync(`devices/w${i + 1}/telemetry`, reading(s), { qos: 1 });
    }));
    const log = (await (await fetch(`${gw.httpUrl}/status`)).json()).log;
    expect(log.groupCommits).toBeGreaterThan(0);
    expect(log.commitWriteMsLast).toBeGreaterThan(0);
    expect(log.commitWriteMsMax).toBeGreaterThanOrEqual(log.commitWriteMsLast);
    expect(log.commitWriteMsTotal).toBeGreaterThanOrEqual(log.commitWriteMsMax);
    expect(log.commitWriteMsTotal).toBeLessThanOrEqual(log.commitWriteMsMax * log.groupCommits);
    const text = await (await fetch(`${gw.httpUrl}/metrics`)).text();
    const count = Number(/^sluice_gateway_commit_write_seconds_count (\d+)$/m.exec(text)?.[1]);
    const groups = Number(/^sluice_gateway_group_commits_total (\d+)$/m.exec(text)?.[1]);
    expect(count).toBe(groups);
    expect(groups).toBeGreaterThanOrEqual(log.groupCommits);
    const sum = Number(/^sluice_gateway_commit_write_seconds_sum ([\d.e-]+)$/m.exec(text)?.[1]);
    expect(sum * 1000).toBeGreaterThan(0);
    expect(text).toMatch(/^sluice_gateway_commit_write_seconds_bucket\{le="\+Inf"\} \d+$/m);
  });

  it('commits before PUBACK and forwards every reading in order, per device', async () => {
    gw = await startGateway();
    const devs = await Promise.all(['d1', 'd2', 'd3'].map(connect));
    await Promise.all(devs.map(async (c, i) => {
      for (let s = 1; s <= 40; s++) {
        await c.publishAsync(`devices/d${i + 1}/telemetry`, reading(s), { qos: 1 });
        // PUBACK received ⇒ the reading is in the log
        expect(gw.log.stats.committed).toBeGreaterThanOrEqual(s);
      }
    }));
    await until('all 120 readings at the cloud', () => cloud.records.size === 120);
    for (const d of ['d1', 'd2', 'd3']) {
      const seqs = [...cloud.records.values()].filter((r) => r.dev === d).sort((a, b) => a.seq - b.seq).map((r) => r.dseq);
      expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    }
    const rec = [...cloud.records.values()].find((r) => r.dev === 'd2' && r.dseq === 7)!;
    expect(rec).toMatchObject({ ts: 1_700_000_000_007, vals: { temperature: 20.07, door_open: false } });
    await until('log drained', () => gw.log.stats.backlogRecords === 0);
  });

  it('acknowledges a bad payload, counts and dead-letters it, and keeps serving the device', async () => {
    gw = await startGateway();
    const watcher = await connect('watcher');
    const seen: string[] = [];
    await watcher.subscribeAsync('devices/#', { qos: 1 });
    watcher.on('message', (t, p) => seen.push(`${t} ${p}`));
    const c = await connect('d1');
    await c.publishAsync('devices/d1/telemetry', '{"values": {"temperature": "hot"}}', { qos: 1 });
    await c.publishAsync('devices/d1/telemetry', 'not json at all', { qos: 1 });
    await c.publishAsync('devices/d1/telemetry', reading(1), { qos: 1 });
    await c.publishAsync('devices/d1/telemetry/humidity', '55.5', { qos: 1 });
    await until('2 readings at the cloud', () => cloud.records.size === 2);
    expect(gw.ingest.stats.dropped).toEqual({ bad_payload: 2 });
    expect([...cloud.records.values()].map((r) => r.vals)).toEqual([{ temperature: 20.01, door_open: false }, { humidity: 55.5 }]);
    await until('subscriber saw the two good readings', () => seen.length === 2);
    expect(seen.some((s) => s.includes('hot'))).toBe(false);
    const res = await fetch(`${gw.httpUrl}/metrics`);
    expect(await res.text()).toMatch(/sluice_gateway_dropped_total\{reason="bad_payload"\} 2/);
  });

  it('brokers other topics normally for local subscribers', async () => {
    gw = await startGateway();
    const sub = await connect('sub');
    await sub.subscribeAsync('factory/+/cmd', { qos: 1 });
    const got = new Promise<string>((r) => sub.on('message', (t, p) => r(`${t}=${p}`)));
    const pub = await connect('pub');
    await pub.publishAsync('factory/line1/cmd', 'start', { qos: 1 });
    expect(await got).toBe('factory/line1/cmd=start');
    expect(cloud.requests).toBe(0);
  });

  it('retries 503 with Retry-After and delivers exactly once after recovery', async () => {
    let failing = true;
    cloud.script = () => (failing ? { status: 503, body: { error: 'down' }, headers: { 'retry-after': '0' } } : undefined);
    gw = await startGateway();
    const c = await connect('d1');
    for (let s = 1; s <= 30; s++) await c.publishAsync('devices/d1/telemetry', reading(s), { qos: 1 });
    await until('several failed attempts', () => gw.forwarder.stats.retries >= 3);
    expect(gw.log.stats.backlogRecords).toBe(30);
    failing = false;
    await until('all delivered', () => cloud.records.size === 30 && gw.log.stats.backlogRecords === 0);
    expect(gw.forwarder.stats.errors['http_503']).toBeGreaterThanOrEqual(3);
  });

  it('opens the circuit after repeated failures and closes it on recovery', async () => {
    let failing = true;
    cloud.script = () => (failing ? { status: 500, body: { error: 'boom' } } : undefined);
    gw = await startGateway();
    const c = await connect('d1');
    await c.publishAsync('devices/d1/telemetry', reading(1), { qos: 1 });
    await until('circuit open', () => gw.forwarder.stats.circuit === 'open');
    const ready = await fetch(`${gw.httpUrl}/readyz`);
    expect(ready.status).toBe(503);
    failing = false;
    await until('delivered', () => cloud.records.size === 1);
    // The scripted cloud stores the record before its answer reaches the gateway: wait for the ack.
    await until('the ack processed', () => gw.log.stats.backlogRecords === 0);
    expect(gw.forwarder.stats.circuit).toBe('closed');
  });

  it('backpressure: past highWater pending commits, committed publishes are held (PUBACK and next read delayed) until fewer than lowWater are pending', async () => {
    const { filled: n, recover } = await stallCommits();
    const devs = await Promise.all(Array.from({ length: 30 }, (_, i) => connect(`bp${i}`)));
    const pendingAtPuback: number[] = [];
    const acks = devs.map((c, i) => c.publishAsync(`devices/bp${i}/telemetry`, reading(1), { qos: 1 }).then(() => pendingAtPuback.push(gw.broker.stats.pendingCommits)));
    await until('the readings pending on the full log, past highWater', () => gw.broker.stats.pendingCommits > 20);
    expect(gw.broker.stats.holds).toBe(1);
    recover();
    await Promise.all(acks);
    // Without the hold the first of these PUBACKs would go out with ~29 commits still pending.
    expect(pendingAtPuback).toHaveLength(30);
    expect(Math.max(...pendingAtPuback)).toBeLessThan(10);
    expect(gw.broker.stats.heldPublishes).toBe(0);
    await until('everything at the cloud', () => cloud.records.size === n + 30);
  });

  it('QoS 0: held past highWater like QoS 1, shed and counted past twice highWater; every reading not shed is stored and forwarded in order', async () => {
    const { filled: n, recover } = await stallCommits();
    const watcher = await connect('watch-q0');
    let seen = 0;
    watcher.on('message', () => seen++);
    await watcher.subscribeAsync('devices/q0/telemetry', { qos: 0 });
    const committedBefore = gw.log.stats.committed;
    const c = await connect('q0');
    for (let s = 1; s <= 200; s++) void c.publishAsync('devices/q0/telemetry', reading(s), { qos: 0 });
    // Nothing waits for a QoS 0 commit: the publish completes (and reaches local subscribers) while
    // its reading is still queued for the blocked log.
    await until('QoS 0 readings delivered to a local subscriber before their commit', () => seen >= 10);
    expect(gw.log.stats.committed - committedBefore).toBeLessThan(seen);
    const shed = () => gw.ingest.stats.dropped.shed_qos0 ?? 0;
    await until('QoS 0 readings shed once 2 × highWater commits are pending', () => shed() > 0);
    expect(gw.broker.stats.pendingCommits).toBeLessThanOrEqual(2 * 20 + 1);
    expect(gw.broker.stats.holds).toBeGreaterThanOrEqual(1);
    recover();
    await until('every reading received by the gateway settled', () => gw.ingest.stats.received === n + 200 && gw.broker.stats.pendingCommits === 0);
    const kept = 200 - shed();
    expect(kept).toBeGreaterThanOrEqual(40);
    await until('the readings not shed at the cloud', () => cloud.records.size === n + kept);
    const seqs = [...cloud.records.values()].filter((r) => r.dev === 'q0').sort((a, b) => a.seq - b.seq).map((r) => r.dseq!);
    expect(seqs).toHaveLength(kept);
    // In order, and what was kept is the head of the stream (the rest arrived while shedding)
    // plus whatever came after the pending commits fell back under lowWater.
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]);
    expect(seqs.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it('a QoS 0 flood from several clients is paced by bounded read batches, not shed: every reading stored, in order', async () => {
    // Each client's socket buffers hundreds of publishes; read whole, 5 clients overshoot
    // 2 × highWater at once and the excess is shed. Read in ~1 KiB batches, the holds catch it.
    gw = await startGateway({ log: { sync: 'always' }, broker: { highWater: 400, lowWater: 200, readBatchBytes: 1024, publishRate: 0 } });
    const devs = await Promise.all(Array.from({ length: 5 }, (_, i) => connect(`flood${i}`)));
    const per = 2000;
    await Promise.all(devs.map((c, i) => Promise.all(Array.from({ length: per }, (_, s) => c.publishAsync(`devices/flood${i}/telemetry`, reading(s + 1), { qos: 0 })))));
    await until('every reading received and committed', () => gw.ingest.stats.received === 5 * per && gw.broker.stats.pendingCommits === 0);
    expect(gw.ingest.stats.dropped.shed_qos0 ?? 0).toBe(0);
    expect(gw.ingest.stats.committed).toBe(5 * per);
    expect(gw.broker.stats.holds).toBeGreaterThan(0);
    await until('everything at the cloud', () => cloud.records.size === 5 * per);
    const byDev = new Map<string, number[]>();
    for (const r of [...cloud.records.values()].sort((a, b) => a.seq - b.seq)) byDev.set(r.dev, [...(byDev.get(r.dev) ?? []), r.dseq!]);
    for (let i = 0; i < 5; i++) expect(byDev.get(`flood${i}`)).toEqual(Array.from({ length: per }, (_, s) => s + 1));
  });

  it('packets larger than the read batch are read whole among small ones: nothing lost or reordered', async () => {
    gw = await startGateway({ broker: { highWater: 4, lowWater: 2, readBatchBytes: 256, publishRate: 0 } });
    const c = await connect('mixed');
    const big = (s: number) => reading(s, { tags: { note: 'x'.repeat(120) }, values: Object.fromEntries(Array.from({ length: 100 }, (_, k) => [`metric_${k}`, k + s + 0.125])) });
    expect(big(1).length).toBeGreaterThan(1024);
    // And blobs larger than the socket's read buffer, on another topic, which arrive in pieces.
    const sub = await connect('blob-watch');
    const blobs: number[] = [];
    sub.on('message', (_t, raw) => blobs.push(raw.length));
    await sub.subscribeAsync('factory/blob', { qos: 1 });
    await Promise.all(
      Array.from({ length: 300 }, (_, s) =>
        Promise.all([
          c.publishAsync('devices/mixed/telemetry', s % 10 === 0 ? big(s + 1) : reading(s + 1), { qos: 1 }),
          s % 50 === 0 ? c.publishAsync('factory/blob', Buffer.alloc(100_000, s), { qos: 1 }) : undefined,
        ]),
      ),
    );
    await until('the blobs delivered whole', () => blobs.length === 6);
    expect(blobs).toEqual(Array(6).fill(100_000));
    await until('all 300 committed', () => gw.ingest.stats.committed === 300 && gw.broker.stats.pendingCommits === 0);
    expect(gw.ingest.stats.dropped).toEqual({});
    await until('all at the cloud', () => cloud.records.size === 300);
    expect([...cloud.records.values()].sort((a, b) => a.seq - b.seq).map((r) => r.dseq)).toEqual(Array.from({ length: 300 }, (_, s) => s + 1));
  });

  it('an MQTT retransmission of a committed reading is acknowledged again and stored once', async () => {
    gw = await startGateway();
    const c = await connect('dup');
    await c.publishAsync('devices/dup/telemetry', reading(7), { qos: 1 });
    await c.publishAsync('devices/dup/telemetry', reading(7), { qos: 1 });
    await c.publishAsync('devices/dup/telemetry', reading(8), { qos: 1 });
    expect(gw.ingest.stats.dropped.duplicate).toBe(1);
    expect(gw.ingest.stats.committed).toBe(2);
    expect(gw.broker.stats.pendingCommits).toBe(0);
    await until('both at the cloud', () => cloud.records.size === 2);
  });

  it('a reading that cannot be committed is not acknowledged: its client is disconnected and the slot released', async () => {
    gw = await startGateway();
    const c = await connect('nocommit');
    await c.publishAsync('devices/nocommit/telemetry', reading(1), { qos: 1 });
    // The log goes away under the broker (as in a shutdown): the next commit fails for real.
    await gw.log.close();
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    let acked = false;
    void c.publishAsync('devices/nocommit/telemetry', reading(2), { qos: 1 }).then(() => (acked = true), () => undefined);
    await closed;
    expect(acked).toBe(false);
    expect(gw.ingest.stats.errors).toBe(1);
    expect(gw.ingest.stats.committed).toBe(1);
    expect(gw.broker.stats.pendingCommits).toBe(0);
  });

  it('telemetry skips the broker fan-out until someone subscribes to it, and reaches a subscriber from then on', async () => {
    gw = await startGateway();
    const dev = await connect('fan');
    for (let s = 1; s <= 5; s++) await dev.publishAsync('devices/fan/telemetry', reading(s), { qos: 1 });
    const other = await connect('other-sub');
    await other.subscribeAsync('factory/#', { qos: 1 }); // cannot match telemetry: still skipped
    const watcher = await connect('fan-watch');
    const got: number[] = [];
    watcher.on('message', (_t, raw) => got.push(JSON.parse(String(raw)).seq));
    await watcher.subscribeAsync('$share/g/devices/+/telemetry', { qos: 1 }).catch(() => watcher.subscribeAsync('devices/+/telemetry', { qos: 1 }));
    for (let s = 6; s <= 10; s++) await dev.publishAsync('devices/fan/telemetry', reading(s), { qos: s % 2 ? 1 : 0 });
    await until('the readings published after the subscription delivered', () => got.length === 5);
    expect(got).toEqual([6, 7, 8, 9, 10]);
    await until('all ten at the cloud', () => cloud.records.size === 10);
  });

  it('resends from the expected sequence after a 409 gap', async () => {
    gw = await startGateway();
    const c = await connect('d1');
    for (let s = 1; s <= 10; s++) await c.publishAsync('devices/d1/telemetry', reading(s), { qos: 1 });
    await until('10 delivered', () => cloud.records.size === 10);
    // The cloud "forgets" the last 4 records (e.g. restored from an older backup) and reports a gap.
    for (let s = 7; s <= 10; s++) cloud.records.delete(s);
    cloud.hw = 6;
    // The gateway already deleted 1..10, so it cannot resend them: it must notice, count, and go on.
    for (let s = 11; s <= 15; s++) await c.publishAsync('devices/d1/telemetry', reading(s), { qos: 1 });
    await until('gap reported', () => gw.forwarder.stats.gaps >= 1);
    expect(gw.forwarder.stats.errors['cloud_regressed']).toBeGreaterThanOrEqual(1);
  });

  it('recovers from a 409 by resending the records the cloud is missing', async () => {
    // The first batch is answered with a gap naming its own first sequence (as a cloud does when
    // batches arrive out of order): the gateway must re-read from there and deliver exactly once.
    let once = true;
    cloud.script = (b) => {
      if (once) {
        once = false;
        return { status: 409, body: { code: 'SLUICE_GAP', expected: b.first, error: 'gap' } };
      }
      return undefined;
    };
    gw = await startGateway();
    const c = await connect('d1');
    for (let s = 1; s <= 20; s++) await c.publishAsync('devices/d1/telemetry', reading(s), { qos: 1 });
    await until('all delivered', () => cloud.records.size === 20 && gw.log.stats.backlogRecords === 0);
    expect(gw.forwarder.stats.gaps).toBe(1);
  });

  it('on 400 bisects to the bad record, quarantines it, and delivers the rest', async () => {
    cloud.script = (b) => (b.recs.some((r) => r.dseq === 13) ? { status: 400, body: { error: 'record 13 refused', code: 'SLUICE_BAD_BATCH' } } : undefined);
    gw = await startGateway({ forwarder: { minBackoffMs: 5, maxBackoffMs: 50, lingerMs: 50 } });
    const c = await connect('d1');
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.publishAsync('devices/d1/telemetry', reading(i + 1), { qos: 1 })));
    await until('19 delivered and range skipped', () => cloud.records.size === 19 && gw.log.stats.backlogRecords === 0);
    expect([...cloud.records.values()].some((r) => r.dseq === 13)).toBe(false);
    expect(gw.log.stats.quarantined).toBe(1);
    expect(cloud.hw).toBe(20);
  });

  it('on 413 splits the batch until it fits', async () => {
    cloud.script = (b) => (b.recs.length > 8 ? { status: 413, body: { error: 'too large' } } : undefined);
    gw = await startGateway({ forwarder: { minBackoffMs: 5, maxBackoffMs: 50, lingerMs: 50 } });
    const c = await connect('d1');
    await Promise.all(Array.from({ length: 50 }, (_, i) => c.publishAsync('devices/d1/telemetry', reading(i + 1), { qos: 1 })));
    await until('all delivered', () => cloud.records.size === 50);
    expect(gw.forwarder.stats.splits).toBeGreaterThan(0);
    expect(Math.max(...cloud.batches.map((b) => b.recs.length))).toBeLessThanOrEqual(8);
  });

  it('resumes from its persisted cursor after a restart', async () => {
    let failing = true;
    cloud.script = () => (failing ? { status: 503, body: {} } : undefined);
    gw = await startGateway();
    let c = await connect('d1');
    for (let s = 1; s <= 25; s++) await c.publishAsync('devices/d1/telemetry', reading(s), { qos: 1 });
    await c.endAsync();
    await gw.stop();
    failing = false;
    gw = await startGateway();
    c = await connect('d1');
    for (let s = 26; s <= 30; s++) await c.publishAsync('devices/d1/telemetry', reading(s), { qos: 1 });
    await until('all 30 delivered', () => cloud.records.size === 30);
    expect([...cloud.records.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  });
});

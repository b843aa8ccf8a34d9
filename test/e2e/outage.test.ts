/**
 * Fault injection with real processes: InfluxDB and the cloud go away and come back while devices
 * keep publishing; the log quota fills under `block` and under `drop-oldest`; a byte of a stored
 * record is flipped on disk. Counts come from
 * InfluxDB and the gateway's own counters.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Level } from 'level';
import { join } from 'node:path';
import { SLUICE_BIN } from '../../deploy/processes.js';
import { afterEach, describe, expect, it } from 'vitest';
import { runSim } from '../../devices-sim/sim.js';
import { decodeWire, parseEntry, type WireRecord } from '../../gateway/log-codec.js';
import { allPoints, startStack, type Stack } from '../support/stack.js';
import { until } from '../support/tmp.js';

let stack: Stack | undefined;

afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

async function status(s: Stack): Promise<any> {
  return (await fetch(`${s.gatewayHttp}/status`)).json();
}

async function storedKeys(s: Stack, prefix: string): Promise<string[]> {
  return (await allPoints(s, 'telemetry', `"device" =~ /^${prefix}-/`)).map((p) => `${p.device}@${p.time}`);
}

describe('outages', () => {
  it('InfluxDB down (cloud answers 503), then the cloud down too, then both back: nothing lost, no duplicates, memory bounded', async () => {
    stack = await startStack({ gatewayId: 'gw-outage', gatewayArgs: ['--max-backoff', '1s'] });
    const s = stack;
    const acked = new Set<string>();
    let clock = Date.now();
    let maxRss = 0;
    let rssAtOutage = 0;
    const sim = runSim(
      { url: s.mqttUrl, devices: 20, rate: 40, qos: 1, format: 'json', count: 300, prefix: 'out', seed: 5, drainTimeoutMs: 30_000 },
      { now: () => ++clock, onAck: (ev) => acked.add(`${ev.deviceId}@${ev.ts}`) },
    );
    await until('first acks', () => acked.size >= 300);
    rssAtOutage = rssMb(s.gateway.child.pid!);
    await s.stopInflux();
    await until('cloud answering 503', async () => ((await status(s)).forwarder.errors.http_503 ?? 0) >= 1);
    await s.stopCloud();
    const before = acked.size;
    // Live readings keep being accepted and durably stored throughout the outage.
    await until('readings acknowledged during the outage', () => {
      maxRss = Math.max(maxRss, rssMb(s.gateway.child.pid!));
      return acked.size >= before + 1500;
    }, 60_000, 50);
    const st = await status(s);
    expect(st.log.backlogRecords).toBeGreaterThanOrEqual(1500);
    expect(st.forwarder.consecutiveFailures).toBeGreaterThanOrEqual(1);
    await s.startInflux();
    await s.startCloud();
    const result = await sim;
    expect(result.acked).toBe(6000);
    const keys = await until('all 6000 stored', async () => {
      const k = await storedKeys(s, 'out');
      return k.length >= 6000 ? k : undefined;
    }, 60_000, 250);
    expect(keys).toHaveLength(6000);
    expect(new Set(keys).size).toBe(6000);
    for (const k of acked) expect(keys.includes(k)).toBe(true);
    // Memory does not grow with the backlog: it lives on disk.
    expect(maxRss - rssAtOutage).toBeLessThan(60);
  });

  it('quota full with `block`: acknowledgements stop, the process stays up, and everything arrives once space frees', async () => {
    stack = await startStack({ gatewayId: 'gw-block', gatewayArgs: ['--quota', '120KiB', '--when-full', 'block', '--max-backoff', '1s'] });
    const s = stack;
    await s.stopCloud();
    const acked = new Set<string>();
    let clock = Date.now();
    const sim = runSim(
      { url: s.mqttUrl, devices: 2, rate: 1, max: true, window: 20, qos: 1, format: 'cbor', count: 1500, prefix: 'blk', seed: 9, drainTimeoutMs: 60_000 },
      { now: () => ++clock, onAck: (ev) => acked.add(`${ev.deviceId}@${ev.ts}`) },
    );
    const full = await until('log full', async () => {
      const st = await status(s);
      return st.log.full ? st : undefined;
    }, 30_000, 50);
    expect(full.log.blockedAppends).toBeGreaterThanOrEqual(1);
    expect(full.log.evicted).toBe(0);
    expect(acked.size).toBeLessThan(3000);
    expect(full.log.backlogBytes).toBeLessThanOrEqual(120 * 1024);
    // /readyz says so while it is full
    expect((await fetch(`${s.gatewayHttp}/readyz`)).status).toBe(503);
    await s.startCloud();
    const result = await sim;
    expect(result.acked).toBe(3000);
    const keys = await until('all 3000 stored', async () => {
      const k = await storedKeys(s, 'blk');
      return k.length >= 3000 ? k : undefined;
    }, 60_000, 250);
    expect(new Set(keys).size).toBe(3000);
    const st = await status(s);
    expect(st.log.evicted).toBe(0);
    expect(st.ingest.dropped).toEqual({});
  });

  it('quota full with `drop-oldest`: every reading acknowledged, the oldest evicted and counted exactly', async () => {
    stack = await startStack({ gatewayId: 'gw-drop', gatewayArgs: ['--quota', '120KiB', '--when-full', 'drop-oldest', '--max-backoff', '1s'] });
    const s = stack;
    await s.stopCloud();
    const acked: string[] = [];
    let clock = Date.now();
    const result = await runSim(
      { url: s.mqttUrl, devices: 1, rate: 1, max: true, window: 20, qos: 1, format: 'cbor', count: 3000, prefix: 'drp', seed: 3, drainTimeoutMs: 30_000 },
      { now: () => ++clock, onAck: (ev) => acked.push(`${ev.deviceId}@${ev.ts}`) },
    );
    expect(result.acked).toBe(3000);
    const st = await status(s);
    const evicted = st.log.evicted;
    expect(evicted).toBeGreaterThan(0);
    expect(st.log.backlogBytes).toBeLessThanOrEqual(120 * 1024);
    const metrics = await (await fetch(`${s.gatewayHttp}/metrics`)).text();
    expect(metrics).toContain(`sluice_gateway_dropped_total{reason="evicted_quota"} ${evicted}`);
    await s.startCloud();
    const keys = await until('the kept readings stored', async () => {
      const st2 = await status(s);
      return st2.log.backlogRecords === 0 ? storedKeys(s, 'drp') : undefined;
    }, 60_000, 250);
    expect(keys.length).toBe(3000 - evicted);
    expect(new Set(keys).size).toBe(keys.length);
    // What survives is the newest data, plus the first batch, which was already in flight when the
    // cloud went away (it is never evicted: it may have been written): a prefix and a suffix.
    const stored = new Set(keys);
    let prefix = 0;
    while (prefix < acked.length && stored.has(acked[prefix])) prefix++;
    expect(prefix).toBeLessThan(keys.length);
    const suffix = acked.slice(acked.length - (keys.length - prefix));
    for (const k of suffix) expect(stored.has(k)).toBe(true);
  });

  it('a byte flipped inside a stored record while the gateway is down: that record quarantined, every other one in InfluxDB exactly once', async () => {
    stack = await startStack({ gatewayId: 'gw-flip', gatewayArgs: ['--max-backoff', '1s', '--windows', 'off'] });
    const s = stack;
    await s.stopCloud();
    const acked: string[] = [];
    let clock = Date.now();
    const result = await runSim(
      { url: s.mqttUrl, devices: 4, rate: 1, max: true, window: 10, qos: 1, format: 'json', count: 250, prefix: 'flip', seed: 11, drainTimeoutMs: 30_000 },
      { now: () => ++clock, onAck: (ev) => acked.push(`${ev.deviceId}@${ev.ts}`) },
    );
    expect(result.acked).toBe(1000);
    await s.gateway.stop('SIGTERM');
    // The log on disk, opened directly (the gateway is down): flip one byte inside one record's
    // stored bytes in the middle of the backlog (not in LevelDB's own framing).
    const db = new Level<Buffer, Buffer>(join(s.dir, 'gateway', 'log'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open();
    const frames: Array<[Buffer, Buffer]> = [];
    for await (const [k, v] of db.iterator({ gt: Buffer.from([0x72]), lt: Buffer.from([0x73]) })) frames.push([k, v]);
    const [key, value] = frames[Math.floor(frames.length / 2)];
    const recs: WireRecord[] = [];
    parseEntry(0, value, 0, recs, []);
    const victim = recs[Math.floor(recs.length / 2)];
    const gone = decodeWire(victim);
    value[victim.end - 3] ^= 0x40;
    await db.put(key, value);
    await db.close();
    await s.startCloud();
    await s.startGateway();
    const keys = await until('the backlog delivered', async () => {
      const st = await status(s);
      return st.log.backlogRecords === 0 ? storedKeys(s, 'flip') : undefined;
    }, 60_000, 250);
    const lost = `${gone.dev}@${gone.kind === 'raw' ? gone.ts : ''}`;
    expect(keys).toHaveLength(999);
    expect(new Set(keys).size).toBe(999);
    expect(keys).not.toContain(lost);
    for (const k of acked) if (k !== lost) expect(keys).toContain(k);
    const st = await status(s);
    expect(st.log.quarantined).toBe(1);
    // ... and it can be inspected
    await s.gateway.stop('SIGTERM');
    const out = execFileSync(process.execPath, [SLUICE_BIN, 'gateway', 'dead-letter', '--data', join(s.dir, 'gateway'), '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const q = out.trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.area === 'quarantine');
    expect(q).toHaveLength(1);
    expect(q[0].id).toBe(victim.seq);
    expect(q[0].reason).toMatch(/checksum/);
  });
});

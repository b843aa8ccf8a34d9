/**
 * runSim against a real aedes broker on a real TCP socket (port 0): exact counts per device, valid
 * payload v1 (decoded with protocols/), seqs 1..N in order, QoS 1 acks, CBOR, the in-flight window,
 * a broker that drops a connection mid-run, credentials, and clean disconnects. No sleeps.
 */
import net from 'node:net';
import { Aedes, type AedesPublishPacket, type Client } from 'aedes';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { runSim, type SimOptions } from '../../devices-sim/sim.js';
import { decodePayload, type DecodedPayload } from '../../protocols/payload.js';
import { parseTelemetryTopic } from '../../protocols/topic.js';

interface Seen {
  deviceId: string;
  clientId: string;
  qos: number;
  raw: Buffer;
  p: DecodedPayload;
}

interface TestBroker {
  broker: Aedes;
  url: string;
  seen: Seen[];
  clients: Map<string, Client>;
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function startBroker(opts: ConstructorParameters<typeof Aedes>[0] = {}): Promise<TestBroker> {
  const broker = await Aedes.createBroker(opts);
  const server = net.createServer(broker.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const seen: Seen[] = [];
  const clients = new Map<string, Client>();
  broker.on('client', (c) => clients.set(c.id, c));
  broker.on('publish', (packet: AedesPublishPacket, client: Client | null) => {
    const t = client ? parseTelemetryTopic(packet.topic) : null;
    if (!client || !t) return;
    const raw = Buffer.from(packet.payload as Buffer);
    seen.push({ deviceId: t.deviceId, clientId: client.id, qos: packet.qos, raw, p: decodePayload(raw) });
  });
  const tb: TestBroker = {
    broker,
    url: `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    seen,
    clients,
    close: async () => {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  cleanups.push(tb.close);
  return tb;
}

/** Polls `pred` on every event-loop turn until it holds or the deadline passes. */
async function until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

function byDevice(seen: Seen[]): Map<string, Seen[]> {
  const m = new Map<string, Seen[]>();
  for (const s of seen) m.set(s.deviceId, [...(m.get(s.deviceId) ?? []), s]);
  return m;
}

function base(url: string, over: Partial<SimOptions> = {}): SimOptions {
  return { url, devices: 4, rate: 200, qos: 1, format: 'json', seed: 7, connectRate: 1000, ...over };
}

describe('runSim against aedes', () => {
  it('QoS 1, JSON: exactly `count` valid readings per device, seqs 1..N in order, all PUBACKed', async () => {
    const b = await startBroker();
    const before = Date.now();
    const r = await runSim(base(b.url, { devices: 5, count: 25 }));
    const after = Date.now();

    expect(r).toMatchObject({ sent: 125, acked: 125, unacked: 0, errors: 0 });
    expect(r.rate).toBeGreaterThan(0);
    expect([...r.perDevice.keys()]).toEqual(['sim-0001', 'sim-0002', 'sim-0003', 'sim-0004', 'sim-0005']);
    const seen = byDevice(b.seen);
    expect([...seen.keys()].sort()).toEqual([...r.perDevice.keys()]);
    for (const [id, d] of r.perDevice) {
      expect(d.sent).toBe(25);
      expect(d.ackedCount).toBe(25);
      expect(d.ackedSeqs).toEqual(range(25));
      expect(d.acked.map((a) => a.seq)).toEqual(range(25));
      expect(d.unacked).toEqual([]);
      const got = seen.get(id)!;
      expect(got.map((s) => s.p.seq)).toEqual(range(25));
      // The ts the sim reports per acked seq is the ts in the payload the broker received.
      expect(got.map((s) => s.p.ts)).toEqual(d.acked.map((a) => a.ts));
      for (const s of got) {
        expect(s.clientId).toBe(id);
        expect(s.qos).toBe(1);
        expect(s.raw[0]).toBe(0x7b); // '{'
        expect(Object.keys(s.p.values).sort()).toEqual(['door_open', 'humidity', 'temperature']);
        expect(s.p.ts).toBeGreaterThanOrEqual(before);
        expect(s.p.ts).toBeLessThanOrEqual(after);
        expect(s.p.values.temperature).toBeGreaterThanOrEqual(18);
        expect(s.p.values.temperature).toBeLessThanOrEqual(26);
        expect(s.p.values.humidity).toBeGreaterThanOrEqual(30);
        expect(s.p.values.humidity).toBeLessThanOrEqual(70);
        expect(typeof s.p.values.door_open).toBe('boolean');
      }
      const ts = got.map((s) => s.p.ts!);
      expect(ts).toEqual([...ts].sort((x, y) => x - y));
    }
    await until(() => b.broker.connectedClients === 0, 'all sim clients to disconnect');
  });

  it('QoS 0, CBOR, through a real subscriber: every reading arrives as CBOR payload v1', async () => {
    const b = await startBroker();
    const sub = await mqtt.connectAsync(b.url, { clientId: 'watcher', protocolVersion: 4 });
    cleanups.push(() => sub.endAsync());
    const got: Array<{ topic: string; raw: Buffer }> = [];
    sub.on('message', (topic, raw) => got.push({ topic, raw }));
    await sub.subscribeAsync('devices/+/telemetry', { qos: 0 });

    const r = await runSim(base(b.url, { devices: 3, count: 30, qos: 0, format: 'cbor', prefix: 'cb' }));
    expect(r).toMatchObject({ sent: 90, acked: 90, unacked: 0, errors: 0 });
    await until(() => got.length === 90, 'the subscriber to receive 90 readings');
    const per = new Map<string, number[]>();
    for (const m of got) {
      const id = parseTelemetryTopic(m.topic)!.deviceId;
      expect(m.raw[0] >= 0xa0 && m.raw[0] <= 0xbf).toBe(true);
      const p = decodePayload(m.raw);
      per.set(id, [...(per.get(id) ?? []), p.seq!]);
    }
    expect(Object.fromEntries(per)).toEqual({ 'cb-0001': range(30), 'cb-0002': range(30), 'cb-0003': range(30) });
    for (const d of r.perDevice.values()) expect(d.ackedSeqs).toEqual(range(30));
    expect(b.seen.every((s) => s.qos === 0)).toBe(true);
  });

  it('the same seed gives the same readings', async () => {
    const b = await startBroker();
    await runSim(base(b.url, { devices: 2, count: 10, seed: 99, format: 'cbor' }));
    const first = b.seen.map((s) => [s.deviceId, s.p.seq, s.p.values]);
    b.seen.length = 0;
    await runSim(base(b.url, { devices: 2, count: 10, seed: 99, format: 'cbor' }));
    const key = (x: unknown[]): string => `${x[0]}/${x[1]}`;
    const sortBy = (xs: unknown[][]) => [...xs].sort((a, c) => key(a).localeCompare(key(c)));
    expect(sortBy(b.seen.map((s) => [s.deviceId, s.p.seq, s.p.values]))).toEqual(sortBy(first));
  });

  it('recordAcks: false keeps the counts only', async () => {
    const b = await startBroker();
    const r = await runSim(base(b.url, { devices: 2, count: 10, recordAcks: false }));
    expect(r).toMatchObject({ sent: 20, acked: 20, unacked: 0 });
    for (const d of r.perDevice.values()) expect(d).toMatchObject({ sent: 10, ackedCount: 10, acked: [], ackedSeqs: [], unacked: [] });
  });

  it('durationMs ends the run; what was sent is exactly what the broker saw', async () => {
    const b = await startBroker();
    const r = await runSim(base(b.url, { devices: 3, rate: 50, durationMs: 300 }));
    expect(r.sent).toBeGreaterThan(0);
    expect(r).toMatchObject({ acked: r.sent, unacked: 0, errors: 0 });
    const seen = byDevice(b.seen);
    for (const [id, d] of r.perDevice) {
      expect(seen.get(id)!.map((s) => s.p.seq)).toEqual(range(d.sent));
      expect(d.ackedSeqs).toEqual(range(d.sent));
    }
    await until(() => b.broker.connectedClients === 0, 'all sim clients to disconnect');
  });

  it('an abort signal ends an open-ended run cleanly', async () => {
    const b = await startBroker();
    const ac = new AbortController();
    const run = runSim(base(b.url, { devices: 2, rate: 100, signal: ac.signal, onProgress: (s) => s.acked >= 10 && ac.abort() , progressIntervalMs: 10 }));
    const r = await run;
    expect(r.acked).toBeGreaterThanOrEqual(10);
    expect(r.unacked).toBe(0);
    expect(b.seen).toHaveLength(r.sent);
    await until(() => b.broker.connectedClients === 0, 'all sim clients to disconnect');
  });

  it('--max keeps at most `window` readings in flight per device until the broker acks', async () => {
    const held: Array<{ clientId: string; release: () => void }> = [];
    const b = await startBroker({
      // aedes sends PUBACK only after authorizePublish calls back: holding the callback holds the ack.
      authorizePublish: (client, _packet, cb) => held.push({ clientId: client!.id, release: () => cb(null) }),
    });
    const published = new Map<string, number>();
    const acked = new Map<string, number>();
    let maxInflight = 0;
    const n = (m: Map<string, number>, id: string): number => m.get(id) ?? 0;
    const ac = new AbortController();
    const run = runSim(base(b.url, { devices: 2, max: true, window: 3, signal: ac.signal, drainTimeoutMs: 2000 }), {
      onPublish: (ev) => {
        published.set(ev.deviceId, n(published, ev.deviceId) + 1);
        maxInflight = Math.max(maxInflight, n(published, ev.deviceId) - n(acked, ev.deviceId));
      },
      onAck: (ev) => acked.set(ev.deviceId, n(acked, ev.deviceId) + 1),
    });
    const heldBy = (id: string) => held.filter((h) => h.clientId === id);
    await until(() => n(published, 'sim-0001') === 3 && n(published, 'sim-0002') === 3 && heldBy('sim-0002').length > 0, 'a full window on each device');
    // Acks free slots of one device only: that device publishes once per ack, the other not at all.
    const freed = heldBy('sim-0002');
    held.splice(0, held.length, ...heldBy('sim-0001'));
    for (const h of freed) h.release();
    await until(() => n(published, 'sim-0002') === 3 + freed.length, 'the freed slots to be used');
    expect(n(published, 'sim-0001')).toBe(3);
    ac.abort();
    await until(() => {
      for (const h of held.splice(0)) h.release();
      return b.seen.length === n(published, 'sim-0001') + n(published, 'sim-0002');
    }, 'the broker to accept every publish');
    const r = await run;
    expect(r).toMatchObject({ sent: b.seen.length, acked: b.seen.length, unacked: 0 });
    expect(maxInflight).toBe(3);
    expect(r.perDevice.get('sim-0002')!.ackedSeqs).toEqual(range(n(published, 'sim-0002')));
  });

  it('with a warm-up, the steady rate counts exactly the acks between its end and the end of publishing', async () => {
    const held: Array<() => void> = [];
    const b = await startBroker({ authorizePublish: (_client, _packet, cb) => held.push(() => cb(null)) });
    let elapsed = 0;
    let acked = 0;
    const ac = new AbortController();
    const run = runSim(base(b.url, { devices: 1, max: true, window: 3, signal: ac.signal, warmupMs: 1500, progressIntervalMs: 10, onProgress: (s) => (elapsed = s.elapsedMs) }), {
      onAck: () => acked++,
    });
    const release = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        await until(() => held.length > 0, 'a held publish');
        const before = acked;
        held.shift()!();
        await until(() => acked === before + 1, 'its ack');
      }
    };
    // Two acks during the warm-up (the window stays full: each ack lets one more publish out) ...
    await release(2);
    expect(elapsed).toBeLessThan(1500);
    await until(() => elapsed >= 1520, 'the warm-up to end');
    // ... five after it ...
    await release(5);
    ac.abort();
    // ... and the rest while draining: neither part is in the steady rate.
    await until(() => {
      for (const h of held.splice(0)) h();
      return acked === b.seen.length;
    }, 'the drain');
    const r = await run;
    expect(r.acked).toBe(7 + 3);
    expect(r.steady!.acked).toBe(5);
    expect(r.steady!.durationMs).toBeGreaterThan(0);
    expect(r.steady!.durationMs).toBeLessThan(r.durationMs - 1500);
    expect(r.steady!.rate).toBeCloseTo((5 * 1000) / r.steady!.durationMs, 6);
  });

  it('without a warm-up there is no steady rate', async () => {
    const b = await startBroker();
    const r = await runSim(base(b.url, { devices: 1, count: 5 }));
    expect(r.acked).toBe(5);
    expect(r.steady).toBeUndefined();
  });

  it('--max load mode with QoS 1 publishes as fast as acks allow, counts match the broker', async () => {
    const b = await startBroker();
    const r = await runSim(base(b.url, { devices: 4, max: true, count: 500, format: 'cbor' }));
    expect(r).toMatchObject({ sent: 2000, acked: 2000, unacked: 0, errors: 0 });
    for (const [id, list] of byDevice(b.seen)) {
      expect(list.map((s) => s.p.seq)).toEqual(range(500));
      expect(r.perDevice.get(id)!.ackedSeqs).toEqual(range(500));
    }
  });

  it('survives the broker dropping a connection mid-run: reconnects, resends, counts the error', async () => {
    const b = await startBroker();
    let dropped = false;
    const r = await runSim(base(b.url, { devices: 2, count: 40, rate: 200 }), {
      mqttOptions: { reconnectPeriod: 20 },
      onAck: (a) => {
        if (!dropped && a.deviceId === 'sim-0001' && a.seq === 10) {
          dropped = true;
          b.clients.get('sim-0001')!.conn.destroy();
        }
      },
    });
    expect(dropped).toBe(true);
    expect(r).toMatchObject({ sent: 80, acked: 80, unacked: 0 });
    expect(r.errors).toBeGreaterThanOrEqual(1);
    const d1 = r.perDevice.get('sim-0001')!;
    expect(d1.reconnects).toBeGreaterThanOrEqual(1);
    expect(d1.errors).toBeGreaterThanOrEqual(1);
    expect(d1.ackedSeqs).toEqual(range(40));
    expect(r.perDevice.get('sim-0002')!.errors).toBe(0);
    // At least once: every seq reached the broker (a resent one may arrive twice).
    const seqs = new Set(b.seen.filter((s) => s.deviceId === 'sim-0001').map((s) => s.p.seq));
    expect([...seqs].sort((x, y) => x! - y!)).toEqual(range(40));
    await until(() => b.broker.connectedClients === 0, 'all sim clients to disconnect');
  });

  it('reports unacked readings when the broker never acks, after the drain timeout', async () => {
    const b = await startBroker({ authorizePublish: () => {} });
    const r = await runSim(base(b.url, { devices: 1, count: 3, drainTimeoutMs: 50 }));
    expect(r).toMatchObject({ sent: 3, acked: 0, unacked: 3 });
    expect(r.perDevice.get('sim-0001')!.unacked).toEqual([1, 2, 3]);
  });

  it('a broker that is not there: the run ends at durationMs without throwing', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const r = await runSim(base(`mqtt://127.0.0.1:${port}`, { devices: 2, durationMs: 200 }), { mqttOptions: { reconnectPeriod: 20 } });
    expect(r).toMatchObject({ sent: 0, acked: 0, unacked: 0 });
    expect(r.errors).toBeGreaterThan(0);
    expect(r.lastError).toMatch(/ECONNREFUSED/);
  });

  it('sends username and password; wrong credentials are errors, not a crash', async () => {
    const b = await startBroker({
      authenticate: (_client, username, password, done) => done(null, username === 'u' && password?.toString() === 'p'),
    });
    const ok = await runSim(base(b.url, { devices: 2, count: 3, username: 'u', password: 'p' }));
    expect(ok).toMatchObject({ sent: 6, acked: 6, errors: 0 });
    const denied = await runSim(base(b.url, { devices: 1, durationMs: 150, username: 'u', password: 'wrong' }), { mqttOptions: { reconnectPeriod: 20 } });
    expect(denied.sent).toBe(0);
    expect(denied.errors).toBeGreaterThan(0);
  });

  it('spreads connections over time at connectRate', async () => {
    const b = await startBroker();
    const at: number[] = [];
    b.broker.on('client', () => at.push(performance.now()));
    await runSim(base(b.url, { devices: 5, count: 1, connectRate: 20 }));
    expect(at).toHaveLength(5);
    // Device i waits i/connectRate s: the last starts ≥ 200 ms after the first.
    expect(at[4] - at[0]).toBeGreaterThanOrEqual(150);
  });
});

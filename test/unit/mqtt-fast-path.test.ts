/**
 * gateway/mqtt-fast-path.ts against mqtt-packet itself (the parser and writer aedes uses).
 *
 * Parse: the same byte streams (valid and broken packets, MQTT 3.1.1 and 5, topics ASCII and not,
 * cut at random points and at packet boundaries) go through a plain mqtt-packet parser and a hooked
 * one; the packets they emit (every field, the key order, the payload bytes) and the errors must be
 * the same. PUBACK: bytes on a real socket are the ones mqtt-packet writes, in order, with one write
 * per connection per tick.
 */
import mqttPacket from 'mqtt-packet';
import { createServer, connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coalescePubacks, fastPublishParse } from '../../gateway/mqtt-fast-path.js';
import { wholePacketsEnd } from '../../gateway/read-batch.js';
import { mulberry32 as rng } from '../../devices-sim/signals.js';


const TOPICS = ['sluice/d1/telemetry', 'sluice/d2/temperature', 'capteurs/serre-été/telemetry', 'a', `long/${'x'.repeat(200)}/telemetry`, 'devices/ключ/telemetry'];

/** A stream of packets: a CONNECT of `version`, then a mix of valid and (with `broken`) invalid ones. */
function stream(r: () => number, version: 4 | 5, n: number, broken: boolean): Buffer {
  const opts = { protocolVersion: version };
  const parts: Buffer[] = [mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: 'c1', clean: true, keepalive: 60 } as any, opts)];
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.8) {
      const qos = Math.floor(r() * 3) as 0 | 1 | 2;
      const payload = Buffer.alloc(Math.floor(r() * r() * 600));
      for (let j = 0; j < payload.length; j++) payload[j] = Math.floor(r() * 256);
      const packet: any = { cmd: 'publish', topic: TOPICS[Math.floor(r() * TOPICS.length)], payload, qos, retain: r() < 0.2, dup: r() < 0.2 };
      if (qos > 0) packet.messageId = Math.floor(r() * 65536);
      if (version === 5 && r() < 0.5) packet.properties = { contentType: 'application/json', userProperties: { a: 'b' } };
      parts.push(mqttPacket.generate(packet, opts));
    } else if (k < 0.85) parts.push(mqttPacket.generate({ cmd: 'pingreq' }));
    else if (k < 0.9) parts.push(mqttPacket.generate({ cmd: 'puback', messageId: Math.floor(r() * 65536) } as any, opts));
    else if (k < 0.95) parts.push(mqttPacket.generate({ cmd: 'subscribe', messageId: 5, subscriptions: [{ topic: 'x/#', qos: 1 }] } as any, opts));
    else if (broken) {
      const b = Math.floor(r() * 6);
      if (b === 0) parts.push(Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01])); // QoS 3
      else if (b === 1) parts.push(Buffer.from([0x30, 0x04, 0x00, 0x09, 0x61, 0x62])); // topic longer than the packet
      else if (b === 2) parts.push(Buffer.from([0x32, 0x03, 0x00, 0x01, 0x61])); // QoS 1 without room for its message id
      else if (b === 3) parts.push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])); // a five-byte remaining length
      else if (b === 4) parts.push(Buffer.from([0x32, 0x04, 0x00, 0x01, 0x61, 0x00])); // a message id cut in half
      else parts.push(Buffer.from([0x00, 0x00])); // reserved packet type
    }
  }
  return Buffer.concat(parts);
}

/** What a parser emitted: packets as plain data (key order kept, payloads as hex) and error messages. */
function record(parser: any): unknown[] {
  const seen: unknown[] = [];
  parser.on('packet', (p: any) => seen.push(Object.entries(p).map(([k, v]) => [k, Buffer.isBuffer(v) ? `hex:${v.toString('hex')}` : v])));
  parser.on('error', (e: Error) => seen.push(`error: ${e.message}`));
  return seen;
}

/** Cut points: at random, or (aligned) only at packet boundaries, as read-batch.ts hands them over. */
function feed(parser: { parse(b: Buffer): unknown }, buf: Buffer, cuts: number[]): void {
  let at = 0;
  for (const c of [...cuts, buf.length]) {
    if (c > at) parser.parse(buf.subarray(at, c));
    at = Math.max(at, c);
  }
}

function boundaries(buf: Buffer): number[] {
  // The end of each whole packet, as read-batch.ts finds them (a malformed length: the rest).
  const out: number[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const n = wholePacketsEnd(buf.subarray(pos), 1);
    if (n === 0) break;
    pos += n;
    out.push(pos);
  }
  return out;
}

describe('fastPublishParse', () => {
  for (const version of [4, 5] as const) {
    for (const broken of [false, true]) {
      it(`emits what mqtt-packet emits (MQTT ${version === 4 ? '3.1.1' : '5'}, ${broken ? 'with' : 'no'} broken packets, cut at random and at packet boundaries)`, () => {
        const r = rng(version * 10 + (broken ? 1 : 0));
        let fastBytes = 0;
        let totalBytes = 0;
        for (let round = 0; round < 60; round++) {
          const buf = stream(r, version, 40, broken);
          const aligned = round % 2 === 0;
          const all = boundaries(buf);
          const cuts = aligned ? all.filter(() => r() < 0.3) : Array.from({ length: 12 }, () => Math.floor(r() * buf.length)).sort((a, b) => a - b);
          const plain = mqttPacket.parser();
          const hooked = mqttPacket.parser();
          // Count what still reaches mqtt-packet under the hook.
          const inner = hooked.parse;
          (hooked as any).parse = function (this: any, b: Buffer) {
            fastBytes -= b.length;
            return inner.call(this, b);
          };
          expect(fastPublishParse(hooked, 700)).toBe(true);
          const want = record(plain);
          const got = record(hooked);
          feed(plain, buf, cuts);
          feed(hooked, buf, cuts);
          fastBytes += buf.length;
          totalBytes += buf.length;
          expect(got).toEqual(want);
          expect(want.length).toBeGreaterThan(1);
        }
        // The fast path took part of the stream in 3.1.1 (MQTT 5 always goes the general way).
        if (version === 4) expect(fastBytes).toBeGreaterThan(totalBytes * 0.1);
        else expect(fastBytes).toBe(0);
      });
    }
  }

  it('leaves a packet over maxPacketBytes to mqtt-packet (and so to the size hook), before and after it fast', () => {
    const opts = { protocolVersion: 4 as const };
    const small = (id: number) => mqttPacket.generate({ cmd: 'publish', topic: 't/1', payload: Buffer.from('{"v":1}'), qos: 1, messageId: id, retain: false, dup: false }, opts);
    const big = mqttPacket.generate({ cmd: 'publish', topic: 't/1', payload: Buffer.alloc(500), qos: 0, retain: false, dup: false }, opts);
    const parser = mqttPacket.parser();
    const reached: number[] = [];
    const inner = parser.parse;
    (parser as any).parse = function (this: any, b: Buffer) {
      reached.push(b.length);
      return inner.call(this, b);
    };
    fastPublishParse(parser, 100);
    const seen = record(parser);
    parser.parse(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'c', clean: true, keepalive: 0 } as any));
    reached.length = 0;
    parser.parse(Buffer.concat([small(1), small(2), big, small(3)]));
    expect(reached).toEqual([big.length + small(3).length]);
    expect(seen.slice(1).map((p: any) => p.find(([k]: [string]) => k === 'messageId')?.[1] ?? 'big')).toEqual([1, 2, 'big', 3]);
  });

  it('refuses a parser it does not know', () => {
    expect(fastPublishParse({}, 100)).toBe(false);
    expect(fastPublishParse(undefined, 100)).toBe(false);
  });
});

describe('coalescePubacks', () => {
  let server: ReturnType<typeof createServer>;
  const accepted: Socket[] = [];
  beforeAll(async () => {
    server = createServer((s) => accepted.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    for (const s of accepted) s.destroy();
    await new Promise((r) => server.close(r));
  });

  /** A connected pair: the server side (where PUBACKs are written) and what the client receives. */
  async function pair(): Promise<{ conn: Socket; received: () => Buffer; until: (n: number) => Promise<Buffer> }> {
    const n = accepted.length;
    const client = connect((server.address() as { port: number }).port, '127.0.0.1');
    const chunks: Buffer[] = [];
    client.on('data', (d) => chunks.push(d));
    await new Promise((r) => client.once('connect', r));
    const deadline = Date.now() + 5000;
    while (accepted.length === n) {
      if (Date.now() > deadline) throw new Error('server did not accept');
      await new Promise((r) => setImmediate(r));
    }
    const conn = accepted[accepted.length - 1];
    conn.on('close', () => client.destroy());
    return {
      conn,
      received: () => Buffer.concat(chunks),
      until: async (bytes) => {
        const end = Date.now() + 5000;
        while (Buffer.concat(chunks).length < bytes) {
          if (Date.now() > end) throw new Error(`received ${Buffer.concat(chunks).length} of ${bytes} bytes`);
          await new Promise((r) => setTimeout(r, 5));
        }
        return Buffer.concat(chunks);
      },
    };
  }

  const ack = (messageId: number) => mqttPacket.generate({ cmd: 'puback', messageId } as any);

  it('writes the bytes mqtt-packet writes, in order, once per connection per tick', async () => {
    const a = await pair();
    const b = await pair();
    const plain = await pair();
    expect(coalescePubacks(a.conn)).toBe(true);
    expect(coalescePubacks(b.conn)).toBe(true);
    const writes = new Map<Socket, number>();
    for (const s of [a.conn, b.conn, plain.conn]) {
      const w = s.write.bind(s);
      (s as any).write = (...args: any[]) => {
        writes.set(s, (writes.get(s) ?? 0) + 1);
        return (w as any)(...args);
      };
    }
    const idsA = [1, 2, 65535, 0, 300, 2];
    const idsB = [9, 8, 7];
    for (let i = 0; i < 6; i++) {
      expect(mqttPacket.writeToStream({ cmd: 'puback', messageId: idsA[i] } as any, a.conn)).toBe(true);
      if (i < 3) expect(mqttPacket.writeToStream({ cmd: 'puback', messageId: idsB[i] } as any, b.conn)).toBe(true);
      mqttPacket.writeToStream({ cmd: 'puback', messageId: idsA[i] } as any, plain.conn);
    }
    const wantA = Buffer.concat(idsA.map(ack));
    expect(await a.until(wantA.length)).toEqual(wantA);
    expect(await b.until(12)).toEqual(Buffer.concat(idsB.map(ack)));
    expect(await plain.until(wantA.length)).toEqual(wantA);
    expect(writes.get(a.conn)).toBe(1);
    expect(writes.get(b.conn)).toBe(1);
    expect(writes.get(plain.conn)).toBeGreaterThan(1); // not hooked: mqtt-packet's own writes
  });

  it('leaves every other packet, and PUBACKs with MQTT 5 options, to mqtt-packet', async () => {
    const a = await pair();
    coalescePubacks(a.conn);
    const v5 = { protocolVersion: 5 as const };
    mqttPacket.writeToStream({ cmd: 'puback', messageId: 4 } as any, a.conn);
    mqttPacket.writeToStream({ cmd: 'pingresp' } as any, a.conn);
    mqttPacket.writeToStream({ cmd: 'puback', messageId: 5, reasonCode: 16 } as any, a.conn, v5);
    mqttPacket.writeToStream({ cmd: 'puback', messageId: 6 } as any, a.conn);
    const ping = mqttPacket.generate({ cmd: 'pingresp' } as any);
    const acked5 = mqttPacket.generate({ cmd: 'puback', messageId: 5, reasonCode: 16 } as any, v5);
    const got = await a.until(4 + ping.length + acked5.length + 4);
    // The packets mqtt-packet writes go first; the coalesced PUBACKs follow at the end of the tick, in order.
    expect(got).toEqual(Buffer.concat([ping, acked5, ack(4), ack(6)]));
  });

  it('drops the PUBACKs of a connection that closed before the end of the tick', async () => {
    const a = await pair();
    coalescePubacks(a.conn);
    mqttPacket.writeToStream({ cmd: 'puback', messageId: 1 } as any, a.conn);
    a.conn.destroy();
    await new Promise((r) => setImmediate(r));
    expect(a.received().length).toBe(0);
  });
});

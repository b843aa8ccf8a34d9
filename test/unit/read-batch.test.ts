/**
 * wholePacketsEnd (gateway/read-batch.ts): where a bounded read batch may end. Packets are built
 * with mqtt-packet, the parser aedes uses, so the framing is the real one.
 */
import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { wholePacketsEnd } from '../../gateway/read-batch.js';

const publish = (payloadBytes: number, qos: 0 | 1 = 0): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic: 'devices/d1/telemetry', payload: Buffer.alloc(payloadBytes, 0x61), qos, messageId: qos ? 7 : undefined, retain: false, dup: false });

describe('wholePacketsEnd', () => {
  it('ends at the first packet boundary at or past maxBytes', () => {
    const a = publish(100);
    const b = publish(100);
    const c = publish(100);
    const buf = Buffer.concat([a, b, c]);
    expect(wholePacketsEnd(buf, 1)).toBe(a.length);
    expect(wholePacketsEnd(buf, a.length)).toBe(a.length);
    expect(wholePacketsEnd(buf, a.length + 1)).toBe(a.length + b.length);
    expect(wholePacketsEnd(buf, 10_000)).toBe(buf.length);
  });

  it('never ends inside a packet: a partial tail, a partial length header, a partial fixed header', () => {
    const a = publish(100);
    const big = publish(300); // a two-byte remaining length
    expect(big[1] & 0x80).toBe(0x80);
    const whole = Buffer.concat([a, big]);
    for (let cut = a.length; cut < whole.length; cut++) expect(wholePacketsEnd(whole.subarray(0, cut), 10_000)).toBe(a.length);
    expect(wholePacketsEnd(whole, 10_000)).toBe(whole.length);
  });

  it('is 0 when the first packet is not complete (the caller then hands over everything)', () => {
    const big = publish(20_000); // a three-byte remaining length
    expect(wholePacketsEnd(big.subarray(0, 8192), 8192)).toBe(0);
    expect(wholePacketsEnd(big.subarray(0, 2), 8192)).toBe(0);
    expect(wholePacketsEnd(big, 8192)).toBe(big.length);
  });

  it('hands a malformed remaining length (a fifth continuation byte) to the parser as is', () => {
    const bad = Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00]);
    expect(wholePacketsEnd(bad, 4)).toBe(bad.length);
  });

  it('walks QoS 1 publishes, PUBACKs and PINGREQs alike', () => {
    const parts = [publish(50, 1), mqttPacket.generate({ cmd: 'puback', messageId: 3 }), mqttPacket.generate({ cmd: 'pingreq' }), publish(10, 1)];
    const buf = Buffer.concat(parts);
    let end = 0;
    for (const p of parts) {
      end += p.length;
      expect(wholePacketsEnd(buf, end)).toBe(end);
    }
  });
});

/**
 * MQTT fast paths for the two packets a busy gateway handles per reading: the PUBLISH it reads and
 * the PUBACK it writes. Everything else (and every PUBLISH this code is not sure about) goes
 * through mqtt-packet as before; what the fast paths produce is exactly what mqtt-packet would.
 *
 * - `fastPublishParse(parser, maxPacketBytes)`: a client's parser (mqtt-packet 9, as aedes 1.x makes
 *   it) handed a read batch while between packets emits the batch's leading whole PUBLISH packets
 *   itself, straight from the batch: the same `Packet` objects, with the payload a view of the
 *   batch, without copying the batch into a BufferList, consuming it packet by packet and slicing
 *   it again. It stops at the first byte it would have to judge (another packet type, QoS 3, a
 *   malformed or incomplete length, a packet over `maxPacketBytes`, a topic or message id that does
 *   not fit, MQTT 5 properties) and hands the rest to mqtt-packet, which reports those exactly as
 *   it did. Topics are short texts repeated on every reading: ASCII ones come from a cache.
 * - `coalescePubacks(conn)`: PUBACKs written to this connection (aedes writes one per QoS 1
 *   publish, each as two writes and an uncork) are collected, and each connection gets one write
 *   with all of its PUBACKs at the end of the tick. PUBACKs keep their order (MQTT-4.6.0-2); a
 *   PINGRESP or a delivery written in the same tick may go ahead of them, which MQTT allows.
 *
 * aedes has no option for either, so the parser's `parse` and mqtt-packet's `writeToStream` are
 * wrapped; `false` means the hook could not be installed (the broker logs it once and runs as
 * before). test/unit/mqtt-fast-path.test.ts checks both against mqtt-packet differentially.
 */
import mqttPacket from 'mqtt-packet';
import { AsciiCache } from '../protocols/ascii-cache.js';
import { remainingLength } from './read-batch.js';

interface PacketLike {
  cmd: string | null;
  retain: boolean;
  qos: number;
  dup: boolean;
  length: number;
  topic: string | null;
  payload: Uint8Array | null;
  messageId?: number;
}

interface ParserLike {
  parse: (buf: Uint8Array) => number;
  emit: (event: string, packet: PacketLike) => boolean;
  packet: PacketLike;
  error: Error | null;
  settings: { protocolVersion?: number } | undefined;
  _list: { length: number };
  _stateCounter: number;
}

const topics = new AsciiCache(4096, 128);
const header = { len: 0 };

export function fastPublishParse(parser: unknown, maxPacketBytes: number): boolean {
  const p = parser as ParserLike;
  if (
    !p ||
    typeof p.parse !== 'function' ||
    typeof p.emit !== 'function' ||
    typeof p._list?.length !== 'number' ||
    typeof p._stateCounter !== 'number' ||
    !p.packet ||
    p.packet.length !== -1 ||
    !('payload' in p.packet) ||
    typeof p.packet.constructor !== 'function'
  ) {
    return false;
  }
  const Packet = p.packet.constructor as new () => PacketLike;
  const parse = p.parse;
  p.parse = function (this: ParserLike, buf: Uint8Array): number {
    const v = this.settings?.protocolVersion;
    if ((v === 4 || v === 3) && this._list.length === 0 && this._stateCounter === 0 && this.error === null) {
      const n = emitPublishes(this, Packet, buf, maxPacketBytes);
      if (n === buf.length || this.error !== null) return 0;
      if (n > 0) buf = buf.subarray(n);
    }
    return parse.call(this, buf);
  };
  return true;
}

/** Emit the leading whole, well-formed PUBLISH packets of `buf`; returns the bytes they took. */
function emitPublishes(p: ParserLike, Packet: new () => PacketLike, buf: Uint8Array, maxPacketBytes: number): number {
  const len = buf.length;
  let pos = 0;
  while (pos < len) {
    const b0 = buf[pos];
    if (b0 >> 4 !== 3) break; // not a PUBLISH
    const qos = (b0 >> 1) & 3;
    if (qos === 3) break;
    const i = remainingLength(buf, pos, header);
    if (i < 0) break;
    const rl = header.len;
    if (rl > maxPacketBytes) break;
    const end = i + rl;
    if (end > len || i + 2 > end) break;
    const topicEnd = i + 2 + ((buf[i] << 8) | buf[i + 1]);
    if (topicEnd > end) break;
    let at = topicEnd;
    let messageId = 0;
    if (qos > 0) {
      if (at + 2 > end) break;
      messageId = (buf[at] << 8) | buf[at + 1];
      at += 2;
    }
    // Field by field as mqtt-packet fills them, so the objects have the same shape.
    const packet = new Packet();
    packet.cmd = 'publish';
    packet.retain = (b0 & 1) !== 0;
    packet.qos = qos;
    packet.dup = (b0 & 8) !== 0;
    packet.length = rl;
    packet.topic = topics.text(buf, i + 2, topicEnd) ?? (Buffer.prototype as unknown as { utf8Slice(this: Uint8Array, from: number, to: number): string }).utf8Slice.call(buf, i + 2, topicEnd);
    if (qos > 0) packet.messageId = messageId;
    packet.payload = (buf as Buffer).subarray(at, end);
    pos = end;
    p.emit('packet', packet);
    if (p.error !== null) return len;
  }
  return pos;
}

type WriteToStream = ((packet: { cmd?: string; messageId?: unknown }, stream: any, opts?: unknown) => boolean) & { cacheNumbers?: boolean };

const coalesced = new WeakSet<object>();
/** Connections with PUBACKs waiting for the end of the tick, and their message ids. */
type AckStream = { write(b: Uint8Array): boolean; writable: boolean; writableNeedDrain: boolean };
let waiting = new Map<AckStream, number[]>();
let hooked: boolean | undefined;

/** Collect this connection's PUBACKs into one write per tick (see the header). */
export function coalescePubacks(conn: object): boolean {
  if (hooked === undefined) hooked = hookWriteToStream();
  if (hooked) coalesced.add(conn);
  return hooked;
}

function hookWriteToStream(): boolean {
  const mp = mqttPacket as unknown as { writeToStream?: WriteToStream };
  const original = mp.writeToStream;
  if (typeof original !== 'function') return false;
  const hook: WriteToStream = function (packet, stream, opts) {
    const id = packet?.messageId;
    if (packet?.cmd !== 'puback' || opts !== undefined || typeof id !== 'number' || !(id >= 0 && id <= 0xffff) || (id | 0) !== id || !coalesced.has(stream)) {
      return original(packet, stream, opts);
    }
    if (!stream.writable) return original(packet, stream, opts);
    let ids = waiting.get(stream);
    if (ids === undefined) {
      if (waiting.size === 0) process.nextTick(flushPubacks);
      ids = [];
      waiting.set(stream, ids);
    }
    ids.push(id);
    return !stream.writableNeedDrain;
  };
  // mqtt-packet keeps its cacheNumbers switch on the function it exports.
  Object.defineProperty(hook, 'cacheNumbers', {
    get: () => original.cacheNumbers,
    set: (v: boolean) => {
      original.cacheNumbers = v;
    },
  });
  mp.writeToStream = hook;
  return true;
}

function flushPubacks(): void {
  const batch = waiting;
  waiting = new Map();
  let total = 0;
  for (const ids of batch.values()) total += ids.length;
  // One buffer for the tick, a view of it per connection.
  const all = Buffer.allocUnsafe(total * 4);
  let at = 0;
  for (const [stream, ids] of batch) {
    const from = at;
    for (const id of ids) {
      all[at] = 0x40;
      all[at + 1] = 2;
      all[at + 2] = id >> 8;
      all[at + 3] = id & 0xff;
      at += 4;
    }
    if (stream.writable) stream.write(all.subarray(from, at));
  }
}

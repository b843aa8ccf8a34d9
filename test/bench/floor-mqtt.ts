/**
 * Floor reference for the resources benchmark: the least any Node.js MQTT broker can do for a QoS 1
 * publisher. It answers CONNECT with CONNACK, PUBLISH with PUBACK and PINGREQ with PINGRESP, reads
 * nothing else of a packet (no topic, no payload, no state per client) and keeps nothing. No broker
 * written for Node.js can handle a reading with less CPU or memory than this on the same machine:
 * it is what the event loop, the sockets and the kernel cost by themselves.
 *
 * Same interface as bare-aedes.ts: prints `floor mqtt listening on mqtt://HOST:PORT`; on each
 * `count` line on stdin it prints `count N`, the publishes it answered. Keep this file free of
 * TypeScript syntax: run.ts runs it with plain node (`--input-type=module`).
 */
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

const CONNACK = Buffer.from([0x20, 2, 0, 0]);
const PINGRESP = Buffer.from([0xd0, 0]);
let published = 0;

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    const buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    const replies = [];
    let off = 0;
    while (off + 2 <= buf.length) {
      // Remaining length: 1 to 4 bytes, 7 bits each.
      let len = 0;
      let mul = 1;
      let i = off + 1;
      let b = 0x80;
      while (b & 0x80 && i < buf.length) {
        b = buf[i++];
        len += (b & 0x7f) * mul;
        mul *= 128;
      }
      if (b & 0x80 || i + len > buf.length) break;
      const type = buf[off] >> 4;
      if (type === 1) replies.push(CONNACK);
      else if (type === 3) {
        published++;
        if ((buf[off] >> 1) & 3) {
          const id = i + 2 + buf.readUInt16BE(i);
          replies.push(Buffer.from([0x40, 2, buf[id], buf[id + 1]]));
        }
      } else if (type === 12) replies.push(PINGRESP);
      else if (type === 14) socket.end();
      off = i + len;
    }
    pending = off >= buf.length ? Buffer.alloc(0) : buf.subarray(off);
    if (replies.length) socket.write(replies.length === 1 ? replies[0] : Buffer.concat(replies));
  });
  socket.on('error', () => socket.destroy());
});
server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`floor mqtt listening on mqtt://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}\n`);
});
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'count') process.stdout.write(`count ${published}\n`);
});
process.on('SIGTERM', () => process.exit(0));

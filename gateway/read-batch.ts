/**
 * Bounded read batches for aedes clients.
 *
 * aedes 1.x reads a client's socket in batches: on 'readable' it takes everything buffered
 * (`conn.read(null)`), parses it, and reads again only once every packet of that batch has completed.
 * That is what lets the broker pace a client (gateway/broker.ts holds completions over its high
 * watermark), but a batch is whatever the socket had buffered: 64 KiB or more from a device
 * flooding QoS 0, ~500 publishes dispatched at once before any hold can act. With 100 such clients
 * the pending commits overshoot the watermarks by tens of thousands and the overshoot can only be
 * shed (parsed, counted and thrown away: CPU spent for nothing).
 *
 * `limitReadBatch` caps a batch at whole MQTT packets totalling about `maxBytes`: the rest is put
 * back at the head of the socket's buffer (`unshift`) for the next batch, so the socket stops
 * reading from the kernel and TCP slows the device down instead. Only applied when the client's
 * parser is between packets, so the bytes handed over always start at a packet boundary; a
 * first packet larger than `maxBytes` is handed over whole (or as much of it as has arrived). The
 * batch accounting is made strict too: a 'readable' event starts a read only when no packet of
 * the batch is outstanding (aedes let each such event count one packet as done). aedes has no
 * option for any of this, so the connection's `read`, its 'readable' listener and the parser's
 * `parse` are wrapped; `false` means the hooks could not be installed (the broker logs it once;
 * the flood test in test/integration/gateway-forwarding.test.ts fails without them).
 */

interface HookableClient {
  conn?: {
    read?: (size?: number | null) => unknown;
    unshift?: (chunk: Uint8Array) => void;
    readableLength?: number;
    listeners?: (event: string) => unknown[];
    removeListener?: (event: string, fn: (...args: any[]) => void) => void;
    on?: (event: string, fn: (...args: any[]) => void) => void;
  };
  _parser?: { _list?: { length: number }; _stateCounter?: number; parse?: (buf: Uint8Array) => unknown };
  _parsingBatch?: number;
  _nextBatch?: (err?: Error) => void;
  _paused?: boolean;
  closed?: boolean;
}

/**
 * Where the variable header of the MQTT packet at `buf[pos]` starts, after its fixed header (one
 * byte of type and flags, then the remaining length as a varint of 1-4 bytes), with the remaining
 * length in `out.len`; -1 when the varint is not all in `buf` yet, -2 when it runs past 4 bytes
 * (malformed: for the parser to report).
 */
export function remainingLength(buf: Uint8Array, pos: number, out: { len: number }): number {
  let len = 0;
  let mul = 1;
  for (let i = pos + 1; i < pos + 5; i++) {
    if (i >= buf.length) return -1;
    const b = buf[i];
    len += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) {
      out.len = len;
      return i + 1;
    }
    mul *= 128;
  }
  return -2;
}

const header = { len: 0 };

/**
 * End offset of the whole MQTT packets at the start of `buf` once they reach `maxBytes` (or of all
 * whole packets when they do not). 0 when the first packet is incomplete.
 */
export function wholePacketsEnd(buf: Uint8Array, maxBytes: number): number {
  let pos = 0;
  while (pos < maxBytes) {
    const body = remainingLength(buf, pos, header);
    if (body === -1) return pos;
    // A malformed length: let the parser report it.
    if (body === -2) return buf.length;
    const end = body + header.len;
    if (end > buf.length) return pos;
    pos = end;
  }
  return pos;
}

/** Total bytes of the MQTT packet starting at buf[0] (fixed header included); buf holds its whole length header. */
function packetBytes(buf: Uint8Array): number {
  const body = remainingLength(buf, 0, header);
  // Malformed (or, with maxBytes < 5, not yet complete): whatever is there, for the parser to judge.
  return body < 0 ? buf.length : body + header.len;
}

export function limitReadBatch(client: unknown, maxBytes: number): boolean {
  const c = client as HookableClient;
  const conn = c.conn;
  const parser = c._parser;
  if (
    !conn ||
    typeof conn.read !== 'function' ||
    typeof conn.unshift !== 'function' ||
    typeof conn.readableLength !== 'number' ||
    !parser ||
    typeof parser.parse !== 'function' ||
    typeof parser._list?.length !== 'number' ||
    typeof parser._stateCounter !== 'number' ||
    c._parsingBatch !== 1 ||
    typeof c._nextBatch !== 'function' ||
    typeof conn.listeners !== 'function' ||
    !conn.listeners('readable').includes(c._nextBatch)
  ) {
    return false;
  }
  // aedes counts a batch's packets in `_parsingBatch` and reads again when the count is back to 0;
  // but every 'readable' event (more bytes arrived) also counts one down. With whole-buffer
  // batches of hundreds of packets that slack went unnoticed; with batches of a few it would
  // let a held client be read again. So 'readable' starts a read only when no packet is
  // outstanding (the count starts at 1 for the first read; it is taken over at 0 here).
  const nextBatch = c._nextBatch;
  conn.removeListener!('readable', nextBatch);
  c._parsingBatch = 0;
  conn.on!('readable', () => {
    if (c._parsingBatch !== 0) return;
    c._parsingBatch = 1;
    nextBatch();
  });
  const read = conn.read;
  const parse = parser.parse;
  // A publish that completes synchronously makes aedes read again from inside parse(). aedes
  // itself always took everything buffered, so that nested read found nothing; with bytes left
  // over it would feed the parser while it is parsing. Such a read is deferred until parse()
  // returned, and done then only if aedes still wants it (no packet of the batch outstanding).
  let parsing = false;
  let deferred = false;
  const resume = () => {
    if (c.closed || c._paused || c._parsingBatch !== 0) return;
    const buf = conn.read!(null);
    if (buf) parser.parse!(buf as Uint8Array);
  };
  parser.parse = function (this: typeof parser, buf: Uint8Array) {
    parsing = true;
    try {
      return parse.call(this, buf);
    } finally {
      parsing = false;
      if (deferred) {
        deferred = false;
        setImmediate(resume);
      }
    }
  };
  conn.read = function (this: typeof conn, size?: number | null) {
    if (size !== null && size !== undefined) return read.call(this, size);
    if (parsing) {
      deferred = true;
      return null;
    }
    // Mid-packet (bytes buffered, or its header parsed and its payload still to come): as is.
    if (this.readableLength! <= maxBytes || parser._list!.length !== 0 || parser._stateCounter !== 0) return read.call(this, size);
    // Only the head is taken (read(null) would concatenate everything buffered into one new
    // buffer, again for every batch); the bytes after its last whole packet go back.
    const head = read.call(this, maxBytes) as Buffer;
    const end = wholePacketsEnd(head, maxBytes);
    if (end === 0) {
      // The first packet is longer than maxBytes: that packet, or as much of it as has arrived
      // (all of which is that packet's; the parser keeps the part until the rest comes).
      const total = packetBytes(head);
      const rest = read.call(this, Math.min(total - head.length, this.readableLength!)) as Buffer | null;
      return rest ? Buffer.concat([head, rest]) : head;
    }
    if (end < head.length) this.unshift!(head.subarray(end));
    return head.subarray(0, end);
  };
  return true;
}

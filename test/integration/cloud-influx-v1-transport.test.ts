/**
 * InfluxV1Writer's HTTP transport (node:http with a keep-alive agent), against scripted HTTP
 * servers: what it sends, how it splits, keep-alive reuse and the one resend after a reused
 * connection was closed under it, its timeout, error classification and Retry-After, and close().
 * The writer against a real influxd is cloud-influx-v1.test.ts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { InfluxV1Writer } from '../../cloud/influx-v1.js';
import { caught } from '../support/tmp.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** Which connection (1, 2, …) and which request on it (1, 2, …). */
  conn: number;
  nth: number;
}

interface Scripted {
  url: string;
  seen: Seen[];
  open: Set<Socket>;
  connections: number;
  close(): Promise<void>;
}

/** A server that records each request and lets `answer` reply (or not, or cut the connection). */
async function scripted(answer: (s: Seen, res: ServerResponse, req: IncomingMessage) => void): Promise<Scripted> {
  const st: Scripted = { url: '', seen: [], open: new Set(), connections: 0, close: async () => undefined };
  const perSocket = new Map<Socket, { conn: number; n: number }>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const info = perSocket.get(req.socket)!;
      info.n++;
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), conn: info.conn, nth: info.n };
      st.seen.push(s);
      answer(s, res, req);
    });
  });
  server.on('connection', (socket: Socket) => {
    st.connections++;
    perSocket.set(socket, { conn: st.connections, n: 0 });
    st.open.add(socket);
    socket.on('close', () => st.open.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  st.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  st.close = async () => {
    for (const s of st.open) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return st;
}

const ok = (res: ServerResponse) => {
  res.writeHead(204);
  res.end();
};
const writes = (st: Scripted) => st.seen.filter((s) => s.url.startsWith('/write'));


async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

let servers: Scripted[] = [];
let writers: InfluxV1Writer[] = [];
afterEach(async () => {
  for (const w of writers) await w.close();
  for (const s of servers) await s.close();
  servers = [];
  writers = [];
});

async function setup(answer: (s: Seen, res: ServerResponse, req: IncomingMessage) => void, opts: ConstructorParameters<typeof InfluxV1Writer>[1] = {}, auth = false) {
  const st = await scripted(answer);
  servers.push(st);
  const w = new InfluxV1Writer({ api: 1, url: `${st.url}/`, db: 'd b', ...(auth ? { user: 'u', password: 'p:w' } : {}) }, opts);
  writers.push(w);
  return { st, w };
}

describe('InfluxV1Writer transport', () => {
  it('creates the database, then sends the lines as one body with the right URL and headers over one kept-alive connection', async () => {
    const { st, w } = await setup((_s, res) => ok(res), {}, true);
    await w.start();
    const lines = ['m,t=a f=1 1', 'm,t=é f=2 2', 'm f=3 3'];
    await w.write(lines);
    await w.write(['m f=4 4']);
    expect(st.seen[0]).toMatchObject({ method: 'POST', url: '/query', body: 'q=CREATE+DATABASE+%22d+b%22' });
    expect(st.seen[0].headers['content-type']).toBe('application/x-www-form-urlencoded;charset=UTF-8');
    const [a, b] = writes(st);
    expect(a).toMatchObject({ method: 'POST', url: '/write?db=d+b&precision=ns', body: lines.join('\n') });
    expect(a.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(a.headers['content-length']).toBe(String(Buffer.byteLength(lines.join('\n'))));
    expect(a.headers.authorization).toBe(`Basic ${Buffer.from('u:p:w').toString('base64')}`);
    expect(b.body).toBe('m f=4 4');
    expect(st.connections).toBe(1);
    expect(st.seen.map((s) => s.nth)).toEqual([1, 2, 3]);
  });

  it('splits a large write into requests of at most maxLinesPerRequest lines, in order', async () => {
    const { st, w } = await setup((_s, res) => ok(res), { maxLinesPerRequest: 1000 });
    const lines = Array.from({ length: 2500 }, (_, i) => `m f=${i} ${i}`);
    await w.write(lines);
    expect(writes(st).map((s) => s.body)).toEqual([lines.slice(0, 1000).join('\n'), lines.slice(1000, 2000).join('\n'), lines.slice(2000).join('\n')]);
  });

  it('sends a request once more on a new connection when a reused one was closed under it', async () => {
    // Every connection's second request is cut before any answer (an idle timeout on the server).
    const { st, w } = await setup((s, res, req) => (s.nth === 2 ? req.socket.destroy() : ok(res)));
    await w.start();
    await w.write(['m f=1 1']);
    await w.write(['m f=2 2']);
    const got = writes(st);
    expect(got.map((s) => [s.body, s.conn, s.nth])).toEqual([
      ['m f=1 1', 1, 2],
      ['m f=1 1', 2, 1],
      ['m f=2 2', 2, 2],
      ['m f=2 2', 3, 1],
    ]);
  });

  it('does not resend what failed on a fresh connection', async () => {
    const { st, w } = await setup((s, res, req) => (s.url.startsWith('/write') ? req.socket.destroy() : ok(res)));
    await w.start();
    const err = await caught(w.write(['m f=1 1']));
    expect(err.code).toBe('SLUICE_INFLUX_WRITE');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/unreachable \(write\)/);
    // the first attempt went over the reused connection of CREATE DATABASE, the resend over a new one
    expect(writes(st).map((s) => [s.conn, s.nth])).toEqual([
      [1, 2],
      [2, 1],
    ]);
  });

  it('gives up on a server that does not answer within timeoutMs', async () => {
    const { w } = await setup((s, res) => (s.url.startsWith('/write') ? undefined : ok(res)), { timeoutMs: 300 });
    await w.start();
    const t0 = Date.now();
    const err = await caught(w.write(['m f=1 1']));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(err.code).toBe('SLUICE_INFLUX_WRITE');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/no answer within 300 ms/);
  });

  it('classifies refusals: 503 with Retry-After is retryable and carries it, 400 is not and names the reason', async () => {
    let status = 503;
    const { w } = await setup((s, res) => {
      if (!s.url.startsWith('/write')) return ok(res);
      if (status === 503) res.writeHead(503, { 'retry-after': '7', 'content-type': 'application/json' }).end('{"error":"busy"}');
      else res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"partial write: field type conflict"}');
    });
    const busy = await caught(w.write(['m f=1 1']));
    expect(busy).toMatchObject({ code: 'SLUICE_INFLUX_WRITE', retryable: true, detail: { status: 503, retryAfterSeconds: 7 } });
    expect(busy.message).toBe('InfluxDB refused the write (HTTP 503): busy');
    status = 400;
    const refused = await caught(w.write(['m f=1 1']));
    expect(refused).toMatchObject({ code: 'SLUICE_INFLUX_WRITE', retryable: false, detail: { status: 400 } });
    expect(refused.message).toBe('InfluxDB refused the write (HTTP 400): partial write: field type conflict');
  });

  it('creates the database again when InfluxDB says it is gone, and resends once', async () => {
    let dropped = true;
    const { st, w } = await setup((s, res) => {
      if (s.url.startsWith('/write') && dropped) {
        dropped = false;
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"database not found: \\"d b\\""}');
      } else ok(res);
    });
    await w.start();
    await w.write(['m f=1 1']);
    expect(st.seen.map((s) => s.url.split('?')[0])).toEqual(['/query', '/write', '/query', '/write']);
  });

  it('close() closes its idle kept-alive connections', async () => {
    const { st, w } = await setup((_s, res) => ok(res));
    await w.write(['m f=1 1']);
    expect(st.open.size).toBe(1);
    await w.close();
    await until('the connection closed', () => st.open.size === 0);
  });
});

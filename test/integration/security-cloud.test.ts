/**
 * Cloud security in-process against a real influxd: hashed gateway tokens (a gateway writes only as
 * itself), read tokens for the query API, no token in any log line, slowloris guards, and
 * `sluice cloud hash-token`.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { CloudServer } from '../../cloud/server.js';
import { encodeBatch, type RawRecord } from '../../protocols/batch.js';
import { hashSecret, verifySecret } from '../../protocols/secret-hash.js';
import { runSluice } from '../support/cloud-cli.js';
import { tempDir, until } from '../support/tmp.js';

const HASHED_TOKEN = 'hashed-gateway-token-5b8e61';
const PLAIN_TOKEN = 'plain-gateway-token-0c44d2';
const READ_PLAIN = 'read-plain-token-91aa';
const READ_HASHED = 'read-hashed-token-3f07';
const WRONG = 'wrong-token-e1e1e1';

let influx: InfluxdHandle;
let dir: { path: string; remove(): Promise<void> };
let cloud: CloudServer;
let url: string;
const logLines: string[] = [];

beforeAll(async () => {
  dir = await tempDir('sluice-sec-cloud-');
  influx = await startInfluxd();
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logLines.push(String(chunk));
      cb();
    },
  });
  cloud = new CloudServer({
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: dir.path,
    gatewayTokens: { gwPlain: PLAIN_TOKEN },
    gatewayTokenHashes: { gwHashed: await hashSecret(HASHED_TOKEN) },
    queryTokens: [READ_PLAIN],
    queryTokenHashes: [await hashSecret(READ_HASHED)],
    influx: { api: 1, url: influx.url, db: 'sluice_sec' },
    headersTimeoutMs: 500,
    requestTimeoutMs: 1500,
    logger: pino({ level: 'debug' }, sink),
  });
  ({ url } = await cloud.start());
});

afterAll(async () => {
  await cloud?.stop();
  await influx?.stop();
  await dir?.remove();
});

let seq = 0;
function batch(gw: string): Buffer {
  seq++;
  const recs: RawRecord[] = [{ seq, dev: 'sec-dev', ts: 1_732_600_000_000 + seq, vals: { temperature: seq } }];
  return encodeBatch({ gw, inc: `inc-${gw}`, first: seq, last: seq, recs, aggs: [] });
}

async function post(body: Buffer, token: string) {
  const res = await fetch(`${url}/api/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/cbor', authorization: `Bearer ${token}` }, body: new Uint8Array(body) });
  return { status: res.status, body: (await res.json()) as any };
}

describe('gateway tokens', () => {
  it('a hashed token is verified against the gateway the batch names; a gateway can only write as itself', async () => {
    seq = 0;
    expect((await post(batch('gwHashed'), HASHED_TOKEN)).status).toBe(200);
    expect((await post(batch('gwHashed'), WRONG)).status).toBe(401);
    // The hashed gateway's token cannot write as the plain gateway, nor the other way round.
    expect((await post(batch('gwPlain'), HASHED_TOKEN)).status).toBe(403);
    const other = await post(batch('gwHashed'), PLAIN_TOKEN);
    expect(other.status).toBe(403);
    expect(other.body.code).toBe('SLUICE_FORBIDDEN');
    // Unknown gateway id with some token: 401, and nothing about the body leaks.
    const unknown = await post(batch('gwNobody'), WRONG);
    expect(unknown.status).toBe(401);
    // Garbage with an unverified token: 401 (not 400), the body is not judged for strangers.
    const res = await fetch(`${url}/api/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/cbor', authorization: `Bearer ${WRONG}` }, body: new Uint8Array([1, 2, 3]) });
    expect(res.status).toBe(401);
    // A verified hashed token is remembered: the next batches need no scrypt.
    seq = 1;
    for (let i = 0; i < 5; i++) expect((await post(batch('gwHashed'), HASHED_TOKEN)).status).toBe(200);
    const m = await cloud.metrics.registry.metrics();
    expect(m).toMatch(/sluice_cloud_batches_total\{result="unauthorized"\} [3-9]/);
    expect(m).toMatch(/sluice_cloud_batches_total\{result="forbidden"\} 2/);
  });
});

describe('read tokens', () => {
  it('the query API needs a read token (plain or hashed); a gateway token is not one', async () => {
    const q = `${url}/api/v1/devices`;
    expect((await fetch(q)).status).toBe(401);
    expect((await fetch(q, { headers: { authorization: `Bearer ${PLAIN_TOKEN}` } })).status).toBe(401);
    expect((await fetch(q, { headers: { authorization: `Bearer ${WRONG}` } })).status).toBe(401);
    expect((await fetch(q, { headers: { authorization: `Bearer ${READ_PLAIN}` } })).status).toBe(200);
    expect((await fetch(q, { headers: { authorization: `Bearer ${READ_HASHED}` } })).status).toBe(200);
  });
});

describe('logs', () => {
  it('no token ever appears in the log output', async () => {
    await until('refusals logged', () => logLines.some((l) => l.includes('missing or unknown bearer token')));
    const all = logLines.join('');
    expect(all.length).toBeGreaterThan(0);
    for (const t of [HASHED_TOKEN, PLAIN_TOKEN, READ_PLAIN, READ_HASHED, WRONG]) expect(all).not.toContain(t);
  });
});

describe('slow clients', () => {
  function open(): Promise<Socket> {
    const { port } = new URL(url);
    return new Promise((resolve, reject) => {
      const s = netConnect(Number(port), '127.0.0.1', () => resolve(s));
      s.on('error', () => undefined);
      s.once('error', reject);
    });
  }

  it('slowloris headers, a silent socket and a trickled body are cut off while others are served', async () => {
    const trickle = await open();
    const silent = await open();
    const slowBody = await open();
    const closed = (s: Socket) => new Promise<number>((r) => {
      const t0 = Date.now();
      s.once('close', () => r(Date.now() - t0));
    });
    const done = [closed(trickle), closed(silent), closed(slowBody)];
    trickle.write('POST /api/v1/batches HTTP/1.1\r\nHost: x\r\n');
    slowBody.write(`POST /api/v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PLAIN_TOKEN}\r\nContent-Type: application/cbor\r\nContent-Length: 100000\r\n\r\n`);
    const timer = setInterval(() => {
      if (!trickle.destroyed) trickle.write('X-A: b\r\n');
      if (!slowBody.destroyed) slowBody.write('a');
    }, 50);
    try {
      // Meanwhile everyone else is served.
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      const times = await Promise.all(done);
      for (const t of times) expect(t).toBeLessThan(5000);
    } finally {
      clearInterval(timer);
    }
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });
});

describe('sluice cloud hash-token', () => {
  it('prints a hash that verifies the token', async () => {
    const one = await runSluice(['cloud', 'hash-token', 'my-token-123']);
    expect(one.code).toBe(0);
    const hash = one.stdout.trim();
    expect(hash).toMatch(/^scrypt\$N=16384,r=8,p=1\$/);
    expect(await verifySecret('my-token-123', hash)).toBe(true);
    expect(await verifySecret('my-token-124', hash)).toBe(false);
  });
});

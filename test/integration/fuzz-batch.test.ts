/**
 * Fuzzing the batch endpoint of a running cloud (in-process CloudServer, real influxd): 10,000+
 * generated bodies over keep-alive connections, plus a corpus of nasty cases. Each answer must match
 * what the decoder says about the body (malformed → 400 with the decoder's code; too large → 413;
 * another gateway → 403; well-formed → 200/409, or 400 SLUICE_INFLUX_WRITE when InfluxDB refuses a
 * field type); no 5xx, no crash; a valid batch afterwards is stored.
 */
import { Agent, request } from 'node:http';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countPoints, startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { CloudServer } from '../../cloud/server.js';
import { decodeBatch } from '../../protocols/batch.js';
import { isSluiceError } from '../../protocols/errors.js';
import { BATCH_CORPUS, batchBytes, FUZZ_GW, validBatch } from '../support/security-fuzz.js';
import { tempDir } from '../support/tmp.js';

const TOKEN = 'fuzz-token-6b1f';
const MAX_BODY = 256 * 1024;
const DB = 'sluice_fuzz';
let influx: InfluxdHandle;
let dir: { path: string; remove(): Promise<void> };
let cloud: CloudServer;
let url: string;

beforeAll(async () => {
  dir = await tempDir('sluice-fuzz-cloud-');
  influx = await startInfluxd();
  cloud = new CloudServer({
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: dir.path,
    gatewayTokens: { [FUZZ_GW]: TOKEN, 'other-gw': 'other-token-77' },
    influx: { api: 1, url: influx.url, db: DB },
    maxBodyBytes: MAX_BODY,
    logger: pino({ level: 'silent' }),
  });
  ({ url } = await cloud.start());
});

afterAll(async () => {
  agent.destroy();
  await cloud?.stop();
  await influx?.stop();
  await dir?.remove();
});

/** What the cloud must answer for this body, judged by the decoder alone. */
function expected(body: Buffer): { statuses: number[]; code?: string } {
  try {
    const b = decodeBatch(body, { maxBytes: MAX_BODY });
    if (b.gw !== FUZZ_GW) return { statuses: [403], code: 'SLUICE_FORBIDDEN' };
    return { statuses: [200, 409, 400] };
  } catch (err) {
    if (!isSluiceError(err)) throw err;
    return { statuses: [err.code === 'SLUICE_TOO_LARGE' ? 413 : 400], code: err.code };
  }
}

// node:http with a keep-alive agent: several times cheaper per request than fetch.
const agent = new Agent({ keepAlive: true, maxSockets: 6 });

function post(body: Buffer): Promise<{ status: number; code?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/api/v1/batches`,
      { method: 'POST', agent, headers: { 'content-type': 'application/cbor', authorization: `Bearer ${TOKEN}`, 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let code: string | undefined;
          try {
            code = JSON.parse(Buffer.concat(chunks).toString()).code;
          } catch {
            code = undefined;
          }
          resolve({ status: res.statusCode ?? 0, code });
        });
        res.on('error', reject);
      },
    );
    // The server may answer (413) and close before the body is written: that is an answer too.
    req.on('error', reject);
    req.end(body);
  });
}

async function check(body: Buffer, tally: Record<number, number>): Promise<void> {
  const want = expected(body);
  const got = await post(body);
  tally[got.status] = (tally[got.status] ?? 0) + 1;
  const ok = want.statuses.includes(got.status) && (want.code === undefined || got.code === want.code) && (got.status !== 400 || want.code !== undefined || got.code === 'SLUICE_INFLUX_WRITE');
  if (!ok) throw new Error(`body ${body.toString('hex').slice(0, 200)}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
}

describe('batch endpoint fuzz', () => {
  it('10,000 generated bodies are each answered as the decoder judges them; the cloud stays up', async () => {
    const bodies = fc.sample(batchBytes, { numRuns: 10_000, seed: Number(process.env.SLUICE_FUZZ_SEED ?? 0xba7c) });
    const tally: Record<number, number> = {};
    let next = 0;
    // A few keep-alive connections in parallel: fast, and exercises concurrent per-gateway batches.
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        while (next < bodies.length) await check(bodies[next++], tally);
      }),
    );
    expect(Object.values(tally).reduce((a, b) => a + b, 0)).toBe(10_000);
    expect(tally[400]).toBeGreaterThan(3000);
    expect((tally[200] ?? 0) + (tally[409] ?? 0)).toBeGreaterThan(50);
    expect(tally[403]).toBeGreaterThan(50);
    expect(Object.keys(tally).filter((s) => Number(s) >= 500)).toEqual([]);
  });

  it.each(BATCH_CORPUS)('corpus: %s', async (_name, body) => {
    await check(body, {});
  });

  it('a body over the limit is refused with 413 before it is read in full', async () => {
    const res = await post(Buffer.alloc(MAX_BODY + 1, 0xa0));
    expect(res.status).toBe(413);
  });

  it('afterwards the cloud is healthy and a valid batch is stored', async () => {
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const metrics = await cloud.metrics.registry.metrics();
    expect(metrics).not.toMatch(/sluice_cloud_errors_total\{reason="internal"\}/);
    const res = await post(validBatch(1, 5, 'after-fuzz'));
    expect(res.status).toBe(200);
    expect(await countPoints(influx.url, DB, 'telemetry', `"device" = 'fz-valid'`)).toBeGreaterThanOrEqual(5);
  });
});

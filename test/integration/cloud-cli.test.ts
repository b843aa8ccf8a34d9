/** `sluice cloud` as a process: configuration errors, the ready line, a clean stop on signals. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countPoints, startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { HwmStore } from '../../cloud/hwm-store.js';
import { encodeBatch } from '../../protocols/batch.js';
import { runSluice, spawnSluice, waitListening } from '../support/cloud-cli.js';

let influx: InfluxdHandle;
let dir: string;

beforeAll(async () => {
  influx = await startInfluxd();
  dir = await mkdtemp(join(tmpdir(), 'sluice-cloud-cli-'));
});
afterAll(async () => {
  await influx?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('sluice cloud', () => {
  it.each([
    [['--gateway-token', 'gw=t'], '--data'],
    [['--data', 'X', '--gateway-token', 'gw=t', '--listen', 'nowhere'], '--listen'],
    [['--data', 'X', '--gateway-token', 'gw=t', '--influx-api', '3'], '--influx-api'],
    [['--data', 'X', '--gateway-token', 'gw=t', '--influx-api', '2', '--influx-org', 'o', '--influx-bucket', 'b'], '--influx-token'],
    [['--data', 'X'], '--gateway-token'],
    [['--data', 'X', '--gateway-token', 'gw=t', '--no-such-flag'], 'no-such-flag'],
  ])('%j → exit 2 naming %s', async (args, name) => {
    const r = await runSluice(['cloud', ...args.map((a) => (a === 'X' ? join(dir, 'unused') : a))]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(name);
    expect(r.stdout).toBe('');
  });

  it('an unknown config file key → exit 2 naming the key', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'data: /tmp/x\ngateway-token: { gw: t }\ninflux-buckett: b\n');
    const r = await runSluice(['cloud', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('influx-buckett');
  });

  it('serves from a config file plus flags, prints one ready line, writes, and stops cleanly on SIGTERM', async () => {
    const data = join(dir, 'data');
    const file = join(dir, 'cloud.yaml');
    await writeFile(file, `# sample\nlisten: 127.0.0.1:1\ndata: ${data}\ngateway-token:\n  gw-cli: file-token\ninflux: ${influx.url}\ninflux-db: cli_db\n`);
    const c = spawnSluice(['cloud', '--config', file, '--listen', '127.0.0.1:0', '--gateway-token', 'gw-cli=flag-token', '--log-level', 'warn']);
    try {
      const url = await waitListening(c);
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(c.stdout().trim().split('\n')).toHaveLength(1);
      const body = encodeBatch({ gw: 'gw-cli', inc: 'i1', first: 1, last: 2, recs: [
        { seq: 1, dev: 'd', ts: 1732200000000, vals: { x: 1 } },
        { seq: 2, dev: 'd', ts: 1732200000001, vals: { x: 2 } },
      ], aggs: [] });
      const post = (token: string) => fetch(`${url}/api/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/cbor', authorization: `Bearer ${token}` }, body: new Uint8Array(body) });
      expect((await post('file-token')).status).toBe(401); // the flag overrode the file's token
      const res = await post('flag-token');
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ acked: 2 });
      expect(await countPoints(influx.url, 'cli_db', 'telemetry')).toBe(2);
      c.child.kill('SIGTERM');
      expect(await c.exited).toBe(0);
    } finally {
      c.child.kill('SIGKILL');
    }
    expect(c.stderr()).not.toContain('flag-token');
    // LevelDB was closed (the lock is free) and holds the mark
    const store = new HwmStore(data);
    await store.open();
    expect(await store.get('gw-cli', 'i1')).toBe(2);
    await store.close();
  });

  it('exits 0 on SIGINT too, and exits 1 when the data directory is locked by another cloud', async () => {
    const data = join(dir, 'data2');
    const args = ['cloud', '--listen', '127.0.0.1:0', '--data', data, '--gateway-token', 'g=t', '--influx', influx.url, '--log-level', 'silent'];
    const a = spawnSluice(args);
    try {
      await waitListening(a);
      const b = await runSluice(args);
      expect(b.code).toBe(1);
      expect(b.stderr).toMatch(/sluice cloud: /);
      a.child.kill('SIGINT');
      expect(await a.exited).toBe(0);
    } finally {
      a.child.kill('SIGKILL');
    }
  });
});

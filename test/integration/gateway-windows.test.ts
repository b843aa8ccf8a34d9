/**
 * Windows inside the gateway after an outage: aggregates overtake the raw backlog, and under
 * `drop-oldest` a full disk loses raw resolution, not the aggregates (history).
 */
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Gateway, type GatewayConfig } from '../../gateway/gateway.js';
import { ScriptedCloud } from '../support/scripted-cloud.js';
import { damageDataBlock, dataBlocks } from '../support/leveldb-table.js';
import { tempDir, until } from '../support/tmp.js';

let cloud: ScriptedCloud;
let dir: { path: string; remove(): Promise<void> };
let gw: Gateway | undefined;
let client: MqttClient | undefined;
const MIN = 60_000;
const T = Math.floor((Date.now() - 60 * MIN) / MIN) * MIN;

async function startGateway(over: Partial<GatewayConfig> = {}): Promise<Gateway> {
  const g = new Gateway({
    id: 'gw-w',
    dataDir: dir.path,
    mqtt: { host: '127.0.0.1', port: 0 },
    cloud: { url: cloud.url, token: 't' },
    allowAnonymous: true,
    logger: pino({ level: 'silent' }),
    log: { sync: 'never' },
    forwarder: { minBackoffMs: 5, maxBackoffMs: 20, breakerCooldownMs: 20, lingerMs: 2, maxBatchRecords: 100 },
    ...over,
  });
  await g.start();
  return g;
}

/** n readings of device d, one per second of event time from T, 20 in flight. */
async function publishMany(c: MqttClient, dev: string, n: number): Promise<void> {
  const inflight = new Set<Promise<unknown>>();
  for (let i = 0; i < n; i++) {
    const p = c.publishAsync(`devices/${dev}/telemetry`, JSON.stringify({ ts: T + i * 1000, seq: i + 1, values: { temperature: i % 50, door_open: i % 3 === 0 } }), { qos: 1 });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
    if (inflight.size >= 20) await Promise.race(inflight);
  }
  await Promise.all(inflight);
}

beforeEach(async () => {
  cloud = new ScriptedCloud();
  await cloud.start();
  dir = await tempDir();
});

afterEach(async () => {
  await client?.endAsync(true).catch(() => undefined);
  client = undefined;
  await gw?.stop().catch(() => undefined);
  gw = undefined;
  await cloud.stop();
  await dir.remove();
});

describe('gateway windows after an outage', () => {
  it('closed-window aggregates are forwarded ahead of the raw backlog, which follows in order', async () => {
    let down = true;
    const order: string[] = [];
    cloud.script = (b) => {
      if (down) return { status: 503, body: {}, headers: { 'retry-after': '0' } };
      order.push(b.inc.endsWith('.agg') ? 'agg' : 'raw');
      return undefined;
    };
    gw = await startGateway();
    client = await mqtt.connectAsync(gw.mqttUrl, { clientId: 'o1' });
    await publishMany(client, 'o1', 1500); // 25 minutes of event time: 24 closed windows
    await until('windows closed into the aggregate lane', () => gw!.aggLog.stats.committed >= 24);
    expect(gw.log.stats.backlogRecords).toBe(1500);
    down = false;
    await until('everything delivered', () => cloud.records.size === 1500 && cloud.aggs.length >= 24, 30_000);
    // 15 raw batches of 100 are needed; the aggregates went out first or second, not after the backfill.
    expect(order.indexOf('agg')).toBeLessThanOrEqual(1);
    expect(order.filter((o) => o === 'raw').length).toBeGreaterThanOrEqual(15);
    const seqs = [...cloud.records.values()].map((r) => r.dseq);
    expect(seqs).toEqual(Array.from({ length: 1500 }, (_, i) => i + 1));
    const w0 = cloud.aggs.find((a) => a.start === T)!;
    expect(w0.aggs.temperature).toMatchObject({ count: 60, min: 0, max: 49 });
  });

  it('drop-oldest evicts raw readings and keeps their aggregates: resolution lost, not history', async () => {
    let down = true;
    cloud.script = () => (down ? { status: 503, body: {} } : undefined);
    gw = await startGateway({ log: { sync: 'never', quotaBytes: 40 * 1024, whenFull: 'drop-oldest', reserveBytes: 0 } });
    client = await mqtt.connectAsync(gw.mqttUrl, { clientId: 'e1' });
    await publishMany(client, 'e1', 1500);
    await until('windows closed', () => gw!.aggLog.stats.committed >= 24);
    const evicted = gw.log.stats.evicted;
    expect(evicted).toBeGreaterThan(500);
    expect(gw.aggLog.stats.evicted).toBe(0);
    down = false;
    await until('the kept backlog delivered', () => gw!.log.stats.backlogRecords === 0 && gw!.aggLog.stats.backlogRecords === 0, 30_000);
    expect(cloud.records.size).toBe(1500 - evicted);
    // Every closed window arrived with its full count, including the minutes whose raw readings were evicted.
    const byStart = new Map(cloud.aggs.map((a) => [a.start, a]));
    for (let m = 0; m < 24; m++) expect(byStart.get(T + m * MIN)?.aggs.temperature.count).toBe(60);
  });
});

describe('gateway on a damaged disk', () => {
  it('starts on a log whose LevelDB files were damaged, salvages the backlog, and keeps ingesting', async () => {
    cloud.script = () => ({ status: 503, body: {} }); // keep everything in the backlog
    gw = await startGateway({ log: { sync: 'never', writeBufferBytes: 64 * 1024 } });
    client = await mqtt.connectAsync(gw.mqttUrl, { clientId: 'dmg' });
    await publishMany(client, 'dmg', 6000);
    await client.endAsync();
    client = undefined;
    await gw.stop();
    gw = undefined;
    const { readdir, readFile, writeFile, stat } = await import('node:fs/promises');
    const logDir = `${dir.path}/log`;
    // The middle data block of the largest table (the readings'; a small one may hold only
    // metadata or window state, depending on when LevelDB compacted) made unreadable.
    const tables = (await readdir(logDir)).filter((f) => f.endsWith('.ldb'));
    const sizes = await Promise.all(tables.map(async (f) => (await stat(`${logDir}/${f}`)).size));
    const largest = `${logDir}/${tables[sizes.indexOf(Math.max(...sizes))]}`;
    const table = await readFile(largest);
    const blocks = dataBlocks(table).length;
    expect(blocks).toBeGreaterThan(2);
    damageDataBlock(table, Math.floor(blocks / 2));
    await writeFile(largest, table);
    cloud.script = () => undefined;
    gw = await startGateway({ log: { sync: 'never' } });
    expect(gw.log.stats.salvaged + gw.log.stats.lostToCorruption).toBe(6000);
    expect(gw.log.stats.salvaged).toBeGreaterThan(3000);
    expect(gw.log.stats.lostToCorruption).toBeGreaterThan(0); // the block's readings
    client = await mqtt.connectAsync(gw.mqttUrl, { clientId: 'dmg' });
    await client.publishAsync('devices/dmg/telemetry', JSON.stringify({ ts: T + 10_000_000, seq: 99_999, values: { temperature: 1 } }), { qos: 1 });
    await until('salvaged backlog and the new reading delivered', () => cloud.records.size === gw!.log.stats.salvaged + 1, 30_000);
  });

  it('starts on a damaged log that made LevelDB abort (test/fixtures/damaged-leveldb), and `sluice gateway status` says what it found', async () => {
    const { cp } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { spawn } = await import('node:child_process');
    const repo = join(import.meta.dirname, '..', '..');
    await cp(join(repo, 'test', 'fixtures', 'damaged-leveldb'), `${dir.path}/log`, { recursive: true });
    cloud.script = () => ({ status: 503, body: {} });
    gw = await startGateway({ http: { host: '127.0.0.1', port: 0 } });
    expect(gw.log.stats).toMatchObject({ damagedBlocks: 5, salvaged: 5681, lostToCorruption: 319, backlogRecords: 5681 });
    const out = await new Promise<string>((resolve) => {
      const child = spawn(process.execPath, ['bin/sluice.js', 'gateway', 'status', '--http', gw!.httpUrl], { cwd: repo, env: { ...process.env, SLUICE_FROM_SOURCE: '1' }, stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.on('exit', () => resolve(text));
    });
    expect(out).toMatch(/disk damage at start\s+5 damaged blocks, 0 repairs, 0 write-ahead log bytes skipped, 5681 salvaged, 319 lost/);
    expect(out).toMatch(/backlog\s+5681 records/);
  });
});

import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HwmStore, planBatch } from '../../cloud/hwm-store.js';
import type { AggRecord, RawRecord } from '../../protocols/batch.js';
import { tempDir } from '../support/tmp.js';

const rec = (seq: number): RawRecord => ({ seq, dev: 'd', ts: 1000 + seq, vals: { x: seq } });
const agg = (seq: number): AggRecord => ({ seq, dev: 'd', win: '1m', start: 0, end: 60_000, rev: 0, aggs: { x: { count: 1, mean: 1 } } });

describe('planBatch', () => {
  it('first batch of an unknown incarnation must start at 1', () => {
    expect(planBatch({ first: 1, last: 3, recs: [rec(1), rec(2), rec(3)], aggs: [] }, 0)).toMatchObject({ kind: 'write', acked: 3, replayed: 0 });
    expect(planBatch({ first: 2, last: 3, recs: [], aggs: [] }, 0)).toEqual({ kind: 'gap', expected: 1 });
  });

  it('a gap names hw + 1', () => {
    expect(planBatch({ first: 12, last: 20, recs: [], aggs: [] }, 10)).toEqual({ kind: 'gap', expected: 11 });
  });

  it('a batch entirely at or below the mark is a replay that writes nothing', () => {
    expect(planBatch({ first: 5, last: 10, recs: [rec(5), rec(10)], aggs: [agg(7)] }, 10)).toEqual({ kind: 'replay', acked: 10, replayed: 3 });
    expect(planBatch({ first: 1, last: 3, recs: [], aggs: [] }, 10)).toEqual({ kind: 'replay', acked: 10, replayed: 0 });
  });

  it('an overlapping batch writes only what is above the mark', () => {
    const plan = planBatch({ first: 8, last: 12, recs: [rec(8), rec(10), rec(11), rec(12)], aggs: [agg(9), agg(12)] }, 10);
    expect(plan.kind).toBe('write');
    if (plan.kind !== 'write') return;
    expect(plan.recs.map((r) => r.seq)).toEqual([11, 12]);
    expect(plan.aggs.map((a) => a.seq)).toEqual([12]);
    expect(plan.replayed).toBe(3);
    expect(plan.acked).toBe(12);
  });

  it('an empty batch covering a range advances the mark', () => {
    expect(planBatch({ first: 11, last: 15, recs: [], aggs: [] }, 10)).toMatchObject({ kind: 'write', acked: 15, recs: [], aggs: [] });
  });
});

describe('HwmStore (real LevelDB)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-cloud-hwm-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stores marks per (gateway, incarnation) and keeps them across reopen', async () => {
    const s = new HwmStore(dir);
    await s.open();
    expect(await s.get('gw1', 'inc-a')).toBe(0);
    await s.set('gw1', 'inc-a', 10);
    await s.set('gw1', 'inc-b', 3);
    await s.set('gw2', 'inc-a', 7);
    await s.close();
    const s2 = new HwmStore(dir);
    await s2.open();
    expect(await s2.get('gw1', 'inc-a')).toBe(10);
    expect(await s2.get('gw1', 'inc-b')).toBe(3);
    expect(await s2.get('gw2', 'inc-a')).toBe(7);
    expect((await s2.list()).map((e) => `${e.gw}/${e.inc}=${e.hw}`).sort()).toEqual(['gw1/inc-a=10', 'gw1/inc-b=3', 'gw2/inc-a=7']);
    await s2.close();
  });

  it('never lowers a mark', async () => {
    const s = new HwmStore(dir);
    await s.open();
    await s.set('gw', 'i', 10);
    await expect(s.set('gw', 'i', 9)).rejects.toThrow(/go back/);
    expect(await s.get('gw', 'i')).toBe(10);
    await s.close();
  });

  it('a second store on the same directory cannot open (LevelDB lock)', async () => {
    const s = new HwmStore(dir);
    await s.open();
    await expect(new HwmStore(dir).open()).rejects.toThrow();
    await s.close();
  });

  it('serialize runs the work of one gateway strictly in order, even when a step fails', async () => {
    const s = new HwmStore(dir);
    const events: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const a = s.serialize('gw', async () => {
      events.push('a:start');
      await gate;
      events.push('a:end');
      throw new Error('a failed');
    });
    const b = s.serialize('gw', async () => {
      events.push('b');
      return 2;
    });
    const other = s.serialize('gw-other', async () => {
      events.push('other');
    });
    await other;
    expect(events).toEqual(['a:start', 'other']);
    release();
    await expect(a).rejects.toThrow('a failed');
    expect(await b).toBe(2);
    expect(events).toEqual(['a:start', 'other', 'a:end', 'b']);
  });
});

describe('HwmStore damaged on disk', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let dir: string;
  beforeEach(async () => {
    tmp = await tempDir('sluice-hwm-');
    dir = tmp.path;
  });
  afterEach(() => tmp.remove());

  /** A store with marks in a LevelDB table (a reopen turns the write-ahead log into one). */
  async function storeWithTable(): Promise<string> {
    const s = new HwmStore(dir);
    await s.open();
    for (let g = 0; g < 50; g++) await s.set(`gw${g}`, 'inc', 100 + g);
    await s.close();
    const again = new HwmStore(dir);
    await again.open();
    expect(await again.get('gw7', 'inc')).toBe(107);
    await again.close();
    const table = (await readdir(join(dir, 'hwm'))).find((f) => f.endsWith('.ldb'));
    expect(table).toBeDefined();
    return join(dir, 'hwm', table!);
  }

  it('a table block failing its checksum: moved aside unread, an empty store opened, told once', async () => {
    const file = await storeWithTable();
    const t = await readFile(file);
    t[Math.floor(t.length / 4)] ^= 0x5a; // inside the first data block
    await writeFile(file, t);
    const told: Array<[string, any]> = [];
    const s = new HwmStore(dir, { onDamaged: (m, d) => told.push([m, d]) });
    await s.open();
    expect(told).toHaveLength(1);
    expect(told[0][0]).toMatch(/moved aside/);
    expect(told[0][1].reason).toMatch(/checksum/);
    // Marks are relearned from the gateways' x-sluice-acked; here: not known.
    expect(await s.lookup('gw7', 'inc')).toBeUndefined();
    await s.set('gw7', 'inc', 5);
    expect(await s.get('gw7', 'inc')).toBe(5);
    await s.close();
    expect((await readdir(dir)).filter((f) => f.startsWith('hwm.damaged-'))).toHaveLength(1);
  });

  it('a damaged MANIFEST (LevelDB refuses to open): moved aside too', async () => {
    await storeWithTable();
    const name = (await readdir(join(dir, 'hwm'))).find((f) => f.startsWith('MANIFEST-'))!;
    const m = await readFile(join(dir, 'hwm', name));
    m[Math.floor(m.length / 2)] ^= 0xff;
    await writeFile(join(dir, 'hwm', name), m);
    const told: string[] = [];
    const s = new HwmStore(dir, { onDamaged: (msg) => told.push(msg) });
    await s.open();
    expect(told).toHaveLength(1);
    expect(await s.lookup('gw7', 'inc')).toBeUndefined();
    await s.close();
  });
});

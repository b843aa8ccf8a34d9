/**
 * A LevelDB table damaged on disk (flipped bytes, as on a failing SD card) must never take the
 * process down. The prebuilt classic-level decodes table blocks without verifying their checksums
 * and aborts on a garbage key (an assertion in leveldb's dbformat.h), so the log verifies every
 * block at open (protocols/leveldb-verify.ts) and marks damaged ones so that LevelDB reports them,
 * and the salvage handles that. Each open runs in a child process: an abort is a dead child, not a
 * dead test runner.
 */
import { spawn } from 'node:child_process';
import { cp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkTable, crc32c, verifyTables } from '../../protocols/leveldb-verify.js';
import { DurableLog } from '../../gateway/log.js';
import { tempDir } from '../support/tmp.js';
import { mulberry32 as rng } from '../../devices-sim/signals.js';

const repo = join(import.meta.dirname, '..', '..');
const READINGS = 6000;


/** Open the log in a child process; its exit code or signal and its counters. */
function openInChild(dir: string): Promise<{ code: number | null; signal: string | null; out: any; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/open-log.ts', dir], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err = (err + d).slice(-2000)));
    child.on('exit', (code, signal) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(out.trim().split('\n').pop() ?? '');
      } catch {
        parsed = undefined;
      }
      resolve({ code, signal, out: parsed, err });
    });
  });
}

async function largestTable(dir: string): Promise<string> {
  const tables = (await readdir(dir)).filter((f) => f.endsWith('.ldb'));
  const sizes = await Promise.all(tables.map(async (f) => (await stat(join(dir, f))).size));
  return join(dir, tables[sizes.indexOf(Math.max(...sizes))]);
}

describe('LevelDB tables damaged on disk', () => {
  let base: { path: string; remove(): Promise<void> };
  let work: { path: string; remove(): Promise<void> };
  beforeAll(async () => {
    base = await tempDir();
    work = await tempDir();
    // 6,000 readings in several tables (a small write buffer), none acknowledged.
    const log = new DurableLog({ dir: base.path, sync: 'never', writeBufferBytes: 64 * 1024 });
    await log.open();
    const all: Array<Promise<void>> = [];
    for (let i = 0; i < READINGS; i++) {
      all.push(log.append({ kind: 'raw', dev: `dev-${i % 10}`, ts: 1_700_000_000_000 + i * 1000, vals: { temperature: (i % 500) / 10, door_open: i % 3 === 0 }, dseq: i + 1 }).committed);
      if (all.length >= 500) await Promise.all(all.splice(0));
    }
    await Promise.all(all);
    await log.close();
  });
  afterAll(async () => {
    await base.remove();
    await work.remove();
  });

  // test/fixtures/damaged-leveldb: a gateway log with five bytes flipped in its largest table,
  // one of the damaged logs that aborted the gateway before the table check existed.
  const FIXTURE = join(repo, 'test', 'fixtures', 'damaged-leveldb');

  it('the fixture aborts a plain LevelDB full scan (what the check is for)', async () => {
    const dir = join(work.path, 'fixture-plain');
    await cp(FIXTURE, dir, { recursive: true });
    const scan = `import { ClassicLevel } from 'classic-level';
      const db = new ClassicLevel(process.argv[1], { keyEncoding: 'buffer', valueEncoding: 'buffer' });
      await db.open();
      try { for await (const _ of db.iterator()); } catch { /* a reported corruption is not what this shows */ }
      await db.close();`;
    const r = await new Promise<{ signal: string | null; err: string }>((resolve) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', scan, dir], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      child.on('exit', (_code, signal) => resolve({ signal, err }));
    });
    expect(r.signal, r.err).toBe('SIGABRT');
    expect(r.err).toMatch(/Assertion .* failed/);
  });

  it('the log opens the fixture: its 5 damaged blocks marked, every reading salvaged or counted lost', async () => {
    const dir = join(work.path, 'fixture-log');
    await cp(FIXTURE, dir, { recursive: true });
    const res = await openInChild(dir);
    expect(res.signal, res.err).toBeNull();
    expect(res.code, res.err).toBe(0);
    expect(res.out.damagedBlocks).toBe(5);
    expect(res.out.salvaged + res.out.lostToCorruption).toBe(READINGS);
    expect(res.out.salvaged).toBeGreaterThan(5000);
    expect(res.out.read).toBe(res.out.salvaged);
  });

  /** Flip a byte in the middle of the directory's MANIFEST: LevelDB then refuses to open it. */
  async function damageManifest(dir: string): Promise<void> {
    const name = (await readdir(dir)).find((f) => f.startsWith('MANIFEST-'))!;
    const m = await readFile(join(dir, name));
    m[Math.floor(m.length / 2)] ^= 0xff;
    await writeFile(join(dir, name), m);
  }

  it('a damaged MANIFEST: the log is rebuilt from its tables (LevelDB repair) and nothing is lost', async () => {
    const dir = join(work.path, 'manifest');
    await cp(base.path, dir, { recursive: true });
    await damageManifest(dir);
    const res = await openInChild(dir);
    expect(res.code, res.err).toBe(0);
    expect(res.out).toMatchObject({ repairs: 1, read: READINGS, backlogRecords: READINGS, lostToCorruption: 0 });
  });

  it('a damaged MANIFEST and damaged blocks: repaired, and the readings in those blocks counted lost', async () => {
    const dir = join(work.path, 'fixture-manifest');
    await cp(FIXTURE, dir, { recursive: true });
    await damageManifest(dir);
    const res = await openInChild(dir);
    expect(res.code, res.err).toBe(0);
    expect(res.out.repairs).toBe(1);
    expect(res.out.damagedBlocks).toBe(5);
    expect(res.out.read + res.out.lostToCorruption).toBe(READINGS);
    expect(res.out.read).toBeGreaterThan(5000);
  });

  it('CRC-32C is the Castagnoli one LevelDB uses', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('finds nothing wrong with healthy tables', async () => {
    const r = await verifyTables(base.path, false);
    expect(r.tables).toBeGreaterThan(1);
    expect(r.damaged).toEqual([]);
    expect(r.unreadable).toEqual([]);
  });

  it('notices any single byte changed before the footer of a table', async () => {
    const table = await readFile(await largestTable(base.path));
    const r = rng(7);
    for (let k = 0; k < 300; k++) {
      const at = Math.floor(r() * (table.length - 48));
      const copy = Buffer.from(table);
      copy[at] ^= 1 + Math.floor(r() * 255);
      expect(checkTable(copy), `byte ${at}`).toBeDefined();
    }
  });

  it('leaves alone a table without a footer (a compaction cut short leaves one; LevelDB refuses or deletes it itself)', async () => {
    const table = await readFile(await largestTable(base.path));
    expect(checkTable(table.subarray(0, Math.floor(table.length / 2)))).toBeUndefined();
    expect(checkTable(table.subarray(0, 20))).toBeUndefined();
  });

  it('five random bytes flipped in the largest table, 12 times: the process never dies, every reading is salvaged or counted lost', async () => {
    const r = rng(42);
    for (let round = 0; round < 12; round++) {
      const dir = join(work.path, `round-${round}`);
      await cp(base.path, dir, { recursive: true });
      const file = await largestTable(dir);
      const table = await readFile(file);
      for (let k = 0; k < 5; k++) table[Math.floor(table.length * (0.1 + r() * 0.8))] ^= 1 + Math.floor(r() * 255);
      await writeFile(file, table);
      const res = await openInChild(dir);
      expect(res.signal, `round ${round}: ${res.err}`).toBeNull();
      expect(res.code, `round ${round}: ${res.err}`).toBe(0);
      expect(res.out.damagedBlocks, `round ${round}`).toBeGreaterThan(0);
      expect(res.out.salvaged + res.out.lostToCorruption, `round ${round}`).toBe(READINGS);
      expect(res.out.read, `round ${round}`).toBe(res.out.salvaged);
    }
  }, 120_000);
});

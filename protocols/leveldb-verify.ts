/**
 * Checks LevelDB's table files before LevelDB reads them, and turns damage it would choke on into
 * damage it reports.
 *
 * Why: LevelDB reads table blocks without verifying their checksums (classic-level gives no way to
 * ask for it), so a block damaged on disk (a flipped bit on an SD card, a torn write) is decoded as
 * is. Where the garbage lands in a key, the prebuilt classic-level aborts the whole process on an
 * assertion (leveldb dbformat.h: `internal_key.size() >= 8`), at every start, in a compaction or in
 * the first read: a crash loop that no JavaScript can catch. A block LevelDB cannot even begin to
 * decode is different: an unknown block type, or a table without its magic number, is reported as
 * a Corruption error, and the log handles that (log.ts: moved aside, salvaged).
 *
 * So at open, every table is read and each block's checksum (CRC-32C, masked, over the contents and
 * the type byte, as table/format.cc writes it) is verified: the data blocks through the index
 * block, the index, the metaindex and the filter block. Then:
 * - a damaged data, metaindex or filter block gets an unknown type byte (0x7f): LevelDB reports
 *   that block (data) or does without it (meta), and reads everything else;
 * - a damaged index block, or a footer whose handles do not lead to a valid one, gets its magic
 *   number broken: LevelDB reports the whole table.
 * Nothing is changed in a table that verifies, in one without a footer (LevelDB refuses it itself;
 * also what a compaction cut short by a shutdown leaves behind, which LevelDB deletes at open), or
 * in one that cannot be made sense of without a checksum failing (that would be a bug here, not
 * damage: it is only reported). Costs one read of every table at open: ~0.2 s for 53 MB (1M
 * readings) on the 2-core test machine.
 */
import { mkdir, open as openFile, readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { crcTable } from './crc-table.js';

export interface TableDamage {
  file: string;
  /** 'block': the listed blocks were neutralised; 'table': the whole table was (magic broken). */
  scope: 'block' | 'table';
  blocks: Array<{ kind: 'data' | 'index' | 'metaindex' | 'filter'; offset: number; size: number }>;
  reason: string;
}

const FOOTER = 48;
const TRAILER = 5;
const MAGIC_LO = 0x8b80fb57;
const MAGIC_HI = 0xdb477524;
const BAD_TYPE = 0x7f;

/** Whether an error from LevelDB (or abstract-level wrapping one, e.g. a failed open) says Corruption. */
export function isLevelCorruption(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } } | undefined;
  return e?.code === 'LEVEL_CORRUPTION' || e?.cause?.code === 'LEVEL_CORRUPTION';
}

/** LevelDB's own words for an error, also when abstract-level wraps it (a failed open). */
export function levelErrorMessage(err: unknown): string {
  return ((err as { cause?: Error }).cause ?? (err as Error)).message;
}

/**
 * Move a damaged LevelDB directory aside to `<dir>.damaged-<time>` (kept for inspection) and leave
 * an empty directory in its place. The caller closes its LevelDB first. Returns the new name.
 */
export async function moveAside(dir: string): Promise<string> {
  const aside = `${dir}.damaged-${Date.now()}`;
  await rename(dir, aside);
  await mkdir(dir, { recursive: true });
  return aside;
}

/**
 * What LevelDB dropped from its write-ahead log when it was last opened, from its info log (`LOG`,
 * begun anew at every open). LevelDB replays the write-ahead log at open and, without paranoid
 * checks (classic-level has no way to ask for them), skips a damaged stretch with only a line there:
 * "<file>: dropping <n> bytes; Corruption: checksum mismatch". Nothing else tells the caller.
 */
export async function walDropped(dir: string): Promise<{ bytes: number; reasons: string[] }> {
  let text: string;
  try {
    text = await readFile(join(dir, 'LOG'), 'utf8');
  } catch {
    return { bytes: 0, reasons: [] };
  }
  let bytes = 0;
  const reasons: string[] = [];
  for (const m of text.matchAll(/\.log: dropping (\d+) bytes; (.*)$/gm)) {
    bytes += Number(m[1]);
    if (!reasons.includes(m[2])) reasons.push(m[2]);
  }
  return { bytes, reasons };
}

/**
 * Verify every table file of the LevelDB in `dir`; neutralise what is damaged (see the header) when
 * `repair` is true. Returns what was found; `unreadable` lists tables that could not be checked.
 */
export async function verifyTables(dir: string, repair: boolean): Promise<{ damaged: TableDamage[]; unreadable: Array<{ file: string; reason: string }>; tables: number; bytes: number }> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((f) => f.endsWith('.ldb') || f.endsWith('.sst')).sort();
  } catch {
    return { damaged: [], unreadable: [], tables: 0, bytes: 0 };
  }
  const damaged: TableDamage[] = [];
  const unreadable: Array<{ file: string; reason: string }> = [];
  let bytes = 0;
  for (const name of names) {
    const file = join(dir, name);
    let table: Buffer;
    try {
      table = await readFile(file);
    } catch (err) {
      unreadable.push({ file, reason: (err as Error).message });
      continue;
    }
    bytes += table.length;
    let found: TableDamage | undefined;
    try {
      found = checkTable(table, file);
    } catch (err) {
      unreadable.push({ file, reason: `not understood: ${(err as Error).message}` });
      continue;
    }
    if (!found) continue;
    damaged.push(found);
    if (repair) await neutralise(file, table.length, found);
  }
  return { damaged, unreadable, tables: names.length, bytes };
}

/** The damage of one table, or undefined when every block verifies. Throws only on a bug here. */
export function checkTable(table: Buffer, file = ''): TableDamage | undefined {
  const whole = (reason: string): TableDamage => ({ file, scope: 'table', blocks: [], reason });
  // No footer, or a broken magic number: LevelDB refuses such a table by itself (a clean Corruption
  // error), and it is also what the unfinished output of a compaction cut short by a shutdown looks
  // like (not part of the database; LevelDB deletes it at open). Not reported.
  if (table.length < FOOTER) return undefined;
  const footer = table.subarray(table.length - FOOTER);
  if (footer.readUInt32LE(40) !== MAGIC_LO || footer.readUInt32LE(44) !== MAGIC_HI) return undefined;
  const p = { i: 0 };
  const meta = { offset: varint(footer, p, 40), size: varint(footer, p, 40) };
  const index = { offset: varint(footer, p, 40), size: varint(footer, p, 40) };
  const limit = table.length - FOOTER;
  if (Number.isNaN(index.offset + index.size) || !blockVerifies(table, index.offset, index.size, limit)) {
    return { file, scope: 'table', blocks: [{ kind: 'index', ...index }], reason: 'index block (or the footer pointing at it) damaged' };
  }
  const blocks: TableDamage['blocks'] = [];
  for (const h of handlesIn(blockContents(table, index.offset, index.size))) {
    if (!blockVerifies(table, h.offset, h.size, limit)) blocks.push({ kind: 'data', ...h });
  }
  if (!Number.isNaN(meta.offset + meta.size)) {
    if (!blockVerifies(table, meta.offset, meta.size, limit)) blocks.push({ kind: 'metaindex', ...meta });
    else for (const h of handlesIn(blockContents(table, meta.offset, meta.size))) if (!blockVerifies(table, h.offset, h.size, limit)) blocks.push({ kind: 'filter', ...h });
  }
  // Blocks that do not even lie inside the table cannot be neutralised one by one.
  if (blocks.some((b) => b.offset + b.size + TRAILER > limit)) return whole('a block handle points outside the table');
  return blocks.length > 0 ? { file, scope: 'block', blocks, reason: `${blocks.length} block(s) fail their checksum` } : undefined;
}

/** [offset, size] of each data block of an intact table, in key order (fault tests damage one). */
export function dataBlockHandles(table: Buffer): Array<{ offset: number; size: number }> {
  const footer = table.subarray(table.length - FOOTER);
  if (footer.readUInt32LE(40) !== MAGIC_LO || footer.readUInt32LE(44) !== MAGIC_HI) throw new Error('not a LevelDB table (bad magic number)');
  const p = { i: 0 };
  varint(footer, p, 40);
  varint(footer, p, 40);
  const offset = varint(footer, p, 40);
  const size = varint(footer, p, 40);
  return handlesIn(blockContents(table, offset, size));
}

async function neutralise(file: string, length: number, d: TableDamage): Promise<void> {
  const fh = await openFile(file, 'r+');
  try {
    if (d.scope === 'table') {
      // Zero the magic number: "not an sstable (bad magic number)".
      await fh.write(Buffer.alloc(8), 0, 8, length - 8);
    } else {
      for (const b of d.blocks) await fh.write(Buffer.from([BAD_TYPE]), 0, 1, b.offset + b.size);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function blockVerifies(table: Buffer, offset: number, size: number, limit: number): boolean {
  if (offset < 0 || size < 0 || offset + size + TRAILER > limit) return false;
  const crc = crc32c(table, offset, offset + size + 1); // contents and type byte
  return mask(crc) === table.readUInt32LE(offset + size + 1);
}

/** A verified block's contents, decompressed. */
function blockContents(table: Buffer, offset: number, size: number): Buffer {
  const raw = table.subarray(offset, offset + size);
  const type = table[offset + size];
  if (type === 0) return raw;
  if (type === 1) return snappyDecompress(raw);
  throw new Error(`block of unknown type ${type} with a valid checksum`);
}

/** The block handles that are the values of a (verified) index or metaindex block. */
function handlesIn(block: Buffer): Array<{ offset: number; size: number }> {
  if (block.length < 4) throw new Error('block too short');
  const restarts = block.readUInt32LE(block.length - 4);
  const end = block.length - 4 - 4 * restarts;
  if (end < 0) throw new Error('bad restart count');
  const out: Array<{ offset: number; size: number }> = [];
  const q = { i: 0 };
  while (q.i < end) {
    varint(block, q, end); // key bytes shared with the previous key
    const unshared = varint(block, q, end);
    const valueLength = varint(block, q, end);
    q.i += unshared;
    const v = { i: q.i };
    const valueEnd = q.i + valueLength;
    if (Number.isNaN(unshared + valueLength) || valueEnd > end) throw new Error('bad block entry');
    const offset = varint(block, v, valueEnd);
    const size = varint(block, v, valueEnd);
    // The metaindex also holds non-handle values in principle; only handles are used here.
    if (!Number.isNaN(offset + size)) out.push({ offset, size });
    q.i = valueEnd;
  }
  return out;
}

/** A varint64 below `end`; NaN when it runs past `end` or beyond 2^53. */
function varint(b: Uint8Array, p: { i: number }, end: number): number {
  let r = 0;
  let s = 0;
  for (;;) {
    if (p.i >= end || s > 49) return NaN;
    const x = b[p.i++];
    r += (x & 0x7f) * 2 ** s;
    s += 7;
    if ((x & 0x80) === 0) return r;
  }
}

const CRC32C_TABLE = crcTable(0x82f63b78);

/** CRC-32C (Castagnoli) of `b[from, to)`. */
export function crc32c(b: Uint8Array, from = 0, to = b.length): number {
  let c = -1;
  for (let i = from; i < to; i++) c = CRC32C_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** LevelDB's stored form of a CRC (util/crc32c.h Mask). */
function mask(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** Snappy raw-format decompression (LevelDB's block compression); bounds-checked. */
export function snappyDecompress(src: Uint8Array): Buffer {
  const p = { i: 0 };
  const total = varint(src, p, src.length);
  if (Number.isNaN(total) || total > 64 * 1024 * 1024) throw new Error('bad snappy length');
  const out = Buffer.alloc(total);
  let o = 0;
  while (p.i < src.length) {
    const tag = src[p.i++];
    const kind = tag & 3;
    if (kind === 0) {
      let len = tag >> 2;
      if (len >= 60) {
        const n = len - 59;
        if (p.i + n > src.length) throw new Error('snappy literal length past the end');
        len = 0;
        for (let k = 0; k < n; k++) len += src[p.i++] * 2 ** (8 * k);
      }
      len += 1;
      if (p.i + len > src.length || o + len > total) throw new Error('snappy literal past the end');
      out.set(src.subarray(p.i, p.i + len), o);
      p.i += len;
      o += len;
      continue;
    }
    let len: number;
    let offset: number;
    if (kind === 1) {
      if (p.i + 1 > src.length) throw new Error('snappy copy past the end');
      len = ((tag >> 2) & 7) + 4;
      offset = ((tag >> 5) << 8) | src[p.i++];
    } else if (kind === 2) {
      if (p.i + 2 > src.length) throw new Error('snappy copy past the end');
      len = (tag >> 2) + 1;
      offset = src[p.i] | (src[p.i + 1] << 8);
      p.i += 2;
    } else {
      if (p.i + 4 > src.length) throw new Error('snappy copy past the end');
      len = (tag >> 2) + 1;
      offset = (src[p.i] | (src[p.i + 1] << 8) | (src[p.i + 2] << 16) | (src[p.i + 3] << 24)) >>> 0;
      p.i += 4;
    }
    if (offset === 0 || offset > o || o + len > total) throw new Error('snappy copy out of range');
    for (let k = 0; k < len; k++, o++) out[o] = out[o - offset];
  }
  if (o !== total) throw new Error('snappy output shorter than announced');
  return out;
}

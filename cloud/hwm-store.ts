/**
 * Durable per-gateway high-water marks: for each (gateway id, incarnation), the highest sequence the
 * cloud has durably written to InfluxDB. This is the cloud half of "effectively once".
 *
 * On-disk layout (LevelDB in `<dataDir>/hwm`):
 *   hw!<gateway>!<incarnation>  →  JSON { "hw": <sequence>, "at": <ms when stored> }
 * Gateway ids match [A-Za-z0-9_.-] (no "!"), so the key splits unambiguously.
 * Other cloud state lives in sublevels of the same database (keys `!<name>!…`, e.g. the alert state
 * and outbox of alert-store.ts), so `set(…, ops)` can commit a mark and that state in one atomic batch.
 *
 * Guarantees:
 * - `set` is a synchronous LevelDB write (fsync): once it resolves, the mark survives a crash or
 *   power loss. A mark only moves forward (`set` refuses to lower it).
 * - `serialize(gw, fn)` runs `fn`s of one gateway strictly one after another (a promise chain per
 *   gateway), so two concurrent requests of one gateway never interleave between reading the mark,
 *   writing points and storing the new mark. Different gateways run concurrently.
 * - `planBatch` is the pure decision rule (gap / replay / write the new part); see its doc comment.
 * - Marks read or stored are also kept in memory (a few bytes per gateway incarnation), so a batch
 *   does not read LevelDB for them again: this process is the only writer of the database (LevelDB's
 *   lock), and a mark is cached only after LevelDB has it, so the copy never runs ahead of the disk.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import type { AbstractSublevel } from 'abstract-level';
import type { AggRecord, Batch, RawRecord } from '../protocols/batch.js';
import { isLevelCorruption, levelErrorMessage, moveAside, verifyTables } from '../protocols/leveldb-verify.js';

interface StoredMark {
  hw: number;
  at: number;
}

export type StoreSublevel<V> = AbstractSublevel<Level<string, StoredMark>, string | Buffer | Uint8Array, string, V>;

/** A write to a sublevel, committed together with a mark (`set`) or alone (`batch`). */
export type SublevelOp =
  | { type: 'put'; sublevel: StoreSublevel<any>; key: string; value: unknown }
  | { type: 'del'; sublevel: StoreSublevel<any>; key: string };

export class HwmStore {
  private db: Level<string, StoredMark> | undefined;
  private readonly chains = new Map<string, Promise<unknown>>();
  /** Stored marks by key, as LevelDB holds them (see the module comment). */
  private readonly marks = new Map<string, number>();

  constructor(
    private readonly dataDir: string,
    private readonly opts: { onDamaged?: (message: string, detail: object) => void } = {},
  ) {}

  /**
   * Open the store. A store damaged on disk (a table block that fails its checksum, or LevelDB
   * refusing to open it) is moved aside (`hwm.damaged-<time>`, kept for inspection) and a fresh one
   * started, rather than read: LevelDB would decode the damaged block and can abort the process on
   * it (protocols/leveldb-verify.ts), which would be a crash loop. Nothing acknowledged is lost by
   * that: a gateway sends with every batch what the cloud acknowledged so far (`x-sluice-acked`),
   * and a mark this store does not have is placed from that (ingest.ts); replays rewrite the same
   * points. What is lost is alert state, so an active alert may fire once more.
   */
  async open(): Promise<void> {
    const dir = join(this.dataDir, 'hwm');
    await mkdir(dir, { recursive: true });
    const check = await verifyTables(dir, false);
    let damage = check.damaged.length > 0 ? { reason: 'table blocks fail their checksum', damaged: check.damaged.map((d) => ({ file: d.file, reason: d.reason })) } : undefined;
    // Constructed only when it is to be opened: abstract-level opens a new instance by itself.
    let db: Level<string, StoredMark> | undefined;
    if (!damage) {
      db = new Level<string, StoredMark>(dir, { valueEncoding: 'json' });
      try {
        await db.open();
      } catch (err) {
        if (!isLevelCorruption(err)) throw err;
        damage = { reason: `LevelDB refused to open it: ${levelErrorMessage(err)}`, damaged: [] };
      }
    }
    if (damage) {
      const aside = await moveAside(dir);
      this.opts.onDamaged?.('high-water mark store damaged on disk: moved aside, starting an empty one (marks are relearned from the gateways; alert state is lost)', { aside, ...damage });
      db = new Level<string, StoredMark>(dir, { valueEncoding: 'json' });
      await db.open();
    }
    this.db = db!;
  }

  /** Waits for queued work of every gateway, then closes LevelDB. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.chains.values()]);
    const db = this.db;
    this.db = undefined;
    this.marks.clear();
    await db?.close();
  }

  private key(gw: string, inc: string): string {
    return `hw!${gw}!${inc}`;
  }

  private open_(): Level<string, StoredMark> {
    if (!this.db) throw new Error('HwmStore is not open');
    return this.db;
  }

  /** Stored high-water mark of (gw, inc); 0 when the pair was never seen. */
  async get(gw: string, inc: string): Promise<number> {
    return (await this.lookup(gw, inc)) ?? 0;
  }

  /** Stored high-water mark of (gw, inc), or undefined when this replica never saw the pair. */
  async lookup(gw: string, inc: string): Promise<number | undefined> {
    const key = this.key(gw, inc);
    const known = this.marks.get(key);
    if (known !== undefined) return known;
    const db = this.open_();
    const v = await db.get(key);
    // Not if a set() stored a mark meanwhile (reads and writes may interleave) or the store closed.
    if (v !== undefined && this.db === db && !this.marks.has(key)) this.marks.set(key, v.hw);
    return v?.hw;
  }

  /**
   * Store the mark, and with it `ops` (state derived from the same records, e.g. alert state and
   * outbox entries) in one atomic, synchronous LevelDB batch: after a crash either all of it is there
   * or none of it.
   */
  async set(gw: string, inc: string, hw: number, now = Date.now(), ops: SublevelOp[] = []): Promise<void> {
    const db = this.open_();
    const key = this.key(gw, inc);
    const cur = this.marks.get(key) ?? (await db.get(key))?.hw ?? 0;
    if (hw < cur) throw new Error(`high-water mark of ${gw}/${inc} would go back from ${cur} to ${hw}`);
    if (ops.length === 0) await db.put(key, { hw, at: now }, { sync: true });
    else await db.batch([{ type: 'put', key, value: { hw, at: now } }, ...(ops as any[])], { sync: true });
    if (this.db === db) this.marks.set(key, hw);
  }

  /** A JSON-valued sublevel of this store's database (for state committed together with marks). */
  sublevel<V>(name: string): StoreSublevel<V> {
    return this.open_().sublevel<string, V>(name, { valueEncoding: 'json' });
  }

  /** Commit sublevel writes atomically and synchronously, without a mark. */
  async batch(ops: SublevelOp[]): Promise<void> {
    if (ops.length > 0) await this.open_().batch(ops as any[], { sync: true });
  }

  /** Every stored mark (for diagnostics). */
  async list(): Promise<{ gw: string; inc: string; hw: number; at: number }[]> {
    const out: { gw: string; inc: string; hw: number; at: number }[] = [];
    for await (const [k, v] of this.open_().iterator({ gt: 'hw!', lt: 'hw"' })) {
      const rest = k.slice(3);
      const bang = rest.indexOf('!');
      out.push({ gw: rest.slice(0, bang), inc: rest.slice(bang + 1), hw: v.hw, at: v.at });
    }
    return out;
  }

  /** Run `fn` after every earlier `serialize` call of the same gateway has settled. */
  serialize<T>(gw: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(gw) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.chains.set(gw, tail);
    // Forget an idle gateway's chain so the map does not grow with every gateway ever seen.
    void tail.then(() => {
      if (this.chains.get(gw) === tail) this.chains.delete(gw);
    });
    return run;
  }
}

export type BatchPlan =
  | { kind: 'gap'; expected: number }
  | { kind: 'replay'; acked: number; replayed: number }
  | { kind: 'write'; recs: RawRecord[]; aggs: AggRecord[]; replayed: number; acked: number };

/**
 * The decision rule for a batch against the stored mark `hw` of its (gw, inc):
 * - first > hw + 1: a gap (sequences hw+1 .. first-1 never arrived) → expected = hw + 1;
 * - last <= hw: a pure replay → write nothing, ack hw;
 * - otherwise: write only records and aggregates with seq > hw (the rest are replays), then ack last.
 */
export function planBatch(batch: Pick<Batch, 'first' | 'last' | 'recs' | 'aggs'>, hw: number): BatchPlan {
  if (batch.first > hw + 1) return { kind: 'gap', expected: hw + 1 };
  const total = batch.recs.length + batch.aggs.length;
  if (batch.last <= hw) return { kind: 'replay', acked: hw, replayed: total };
  const recs = batch.recs.filter((r) => r.seq > hw);
  const aggs = batch.aggs.filter((a) => a.seq > hw);
  return { kind: 'write', recs, aggs, replayed: total - recs.length - aggs.length, acked: batch.last };
}

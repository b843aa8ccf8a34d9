/**
 * The gateway's durable log: every accepted reading (and closed window) lives here, in LevelDB,
 * until the cloud acknowledges it.
 *
 * Guarantees
 * - append() assigns the sequence number synchronously, in call order; sequences strictly increase
 *   and survive restarts (the next sequence is written atomically with every group commit).
 * - The promise returned by append() resolves only after the record's group commit is done
 *   (with `sync: always`, fsynced). Callers send the QoS 1 PUBACK after that, never before.
 * - Group commit: appends arriving while a commit is in flight are written together in the next
 *   one (up to `maxGroup` records); at most one LevelDB batch is in flight at a time, so groups
 *   hit the disk in sequence order.
 * - read() streams records in sequence order from a position; the backlog is never loaded whole.
 *   A record failing its checksum is moved to the quarantine area and reported, not thrown.
 * - ack(seq) persists the cursor first, then deletes records <= seq. A crash between the two leaves
 *   records the next open() removes.
 * - Quota: the unacknowledged bytes stay under `quotaBytes` and under the free space of the
 *   filesystem minus `reserveBytes`. When full, `block` holds appends (and so the PUBACKs) until
 *   acks free space; `drop-oldest` evicts the oldest unsent records, counting each one.
 *
 * On-disk key layout (one LevelDB, binary keys)
 *   'r' ‖ seq (u64 BE)     a frame of records whose last sequence is seq (gateway/log-codec.ts; a
 *                          legacy entry written before 0.2 holds the one record seq)
 *   'q' ‖ seq (u64 BE)     quarantined record: CBOR { reason, at, value } (value: its stored bytes)
 *   'e' ‖ seq (u64 BE)     the frame ending at seq was evicted (drop-oldest): u32 BE its record count,
 *                          written with the eviction, deleted once the cursor passes it (missing())
 *   'x' ‖ n (u64 BE)       rejected MQTT payload (dead letter): CBOR { at, topic, client, reason, payload }
 *   'm:meta'               JSON { incarnation, created, version }
 *   'm:next'               next sequence number (decimal)
 *   'm:cursor'             highest sequence acknowledged by the cloud (decimal)
 *   'a', 'b', 'f' ‖ seq    the aggregate lane's records, quarantine and evictions
 *   'm:agg:next', 'm:agg:cursor'
 *   'm:floor'              window checkpoint position: acked raw records above it are kept for replay
 *   'm:sync'               marker written with sync:true by the `interval` sync policy
 *   'm:open'               present while the log is open (written at open, deleted at a clean close)
 *   'w:…'                  window engine checkpoints (gateway/windows-*.ts)
 */
import { Level } from 'level';
import { randomBytes } from 'node:crypto';
import { statfs } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { decode, Encoder } from 'cbor-x';
import { SluiceError } from '../protocols/errors.js';
import { isLevelCorruption, levelErrorMessage, moveAside, verifyTables, walDropped } from '../protocols/leveldb-verify.js';
import {
  decodeWire,
  appendRecord,
  encodeFrame,
  frameOf,
  type RecordBuffer,
  FRAME_HEAD,
  FRAME_MAX_BYTES,
  FRAME_OVERHEAD,
  KEY_BYTES,
  collect,
  parseEntry,
  recordKey,
  type BatchBodyBuilder,
  type RecordSink,
  seqOfKey,
  type CorruptPiece,
  type LogEntry,
  type LogRecord,
  type WireRecord,
} from './log-codec.js';

export type SyncPolicy = 'always' | 'interval' | 'never';
export type FullPolicy = 'block' | 'drop-oldest';

export interface LogConfig {
  /** Directory of the LevelDB. Created if missing. */
  dir: string;
  /** `always`: fsync every group commit (survives power loss); `interval`: fsync every `syncIntervalMs`; `never`: OS-buffered (survives a process crash, not power loss). */
  sync: SyncPolicy;
  /** With `sync: interval`, milliseconds between fsyncs. */
  syncIntervalMs: number;
  /** Most records in one group commit. */
  maxGroup: number;
  /** Longest the first append of an idle log (its last group was small) waits for company before its group commits (ms). */
  commitLingerMs: number;
  /** A linger ends early once no record was appended for this long (ms; see scheduleFlush). */
  commitIdleMs: number;
  /** Under heavy traffic, the longest the next group is gathered before it is written (ms; gatherGroup). */
  commitGatherMs: number;
  /** Most bytes of unacknowledged records the log may hold. */
  quotaBytes: number;
  /** Free space always left on the filesystem, in bytes. */
  reserveBytes: number;
  /** What to do when the quota is reached. */
  whenFull: FullPolicy;
  /** LevelDB write buffer (memtable) size in bytes. */
  writeBufferBytes: number;
  /**
   * LevelDB block cache in bytes (LevelDB's default is 8 MiB). The log is read once, in order, by
   * the forwarder, mostly from the memtable or recent files: a small cache costs no reads and
   * keeps RSS down on a Pi.
   */
  cacheBytes: number;
  /** Keep acked records above the checkpoint floor (set when window state is rebuilt by replay). */
  retainForReplay: boolean;
  /**
   * A group write taking at least this long (ms) is counted (`stats.slowWrites`) and told to
   * `onWarn`, at most once a minute: QoS 1 PUBACKs wait for it, and a disk that gets this slow (a
   * worn SD card, a saturated disk) is worth a line in the log.
   */
  slowWriteMs: number;
}

/**
 * A log holds one or more lanes, each its own sequence space with its own cursor, forwarded as its
 * own incarnation (`<incarnation>` for raw readings, `<incarnation>.agg` for window aggregates), so
 * aggregates overtake a raw backlog without breaking either lane's order.
 */
export type Lane = 'raw' | 'agg';
const LANES: Record<Lane, { rec: number; quarantine: number; evicted: number; suffix: string }> = {
  raw: { rec: 0x72 /* r */, quarantine: 0x71 /* q */, evicted: 0x65 /* e */, suffix: '' },
  agg: { rec: 0x61 /* a */, quarantine: 0x62 /* b */, evicted: 0x66 /* f */, suffix: 'agg:' },
};

export const DEFAULT_LOG_CONFIG: Omit<LogConfig, 'dir'> = {
  sync: 'always',
  syncIntervalMs: 1000,
  maxGroup: 2000,
  // At 1,000 devices × 1 reading/s, 2 ms made groups of ~3 readings (an fsync, a LevelDB write
  // and a wake-up each); a fixed 10 ms cut the gateway's CPU per reading by ~20 %, and a linger of
  // up to 50 ms that ends after 5 ms without an append by another ~16 % (4 A/B pairs: 226 → 190
  // µs), with a third of the fsyncs. The idle end keeps a lone device that waits for each PUBACK
  // at 5 ms per publish instead of the whole linger. Lingers only at low rates: after a group of
  // LINGER_BELOW or more the next one is written at once, and a linger ends once that many wait.
  // Under heavy traffic the next group gathers up to GATHER_TO records for at most commitGatherMs
  // (gatherGroup): a QoS 1 flood's fsyncs 3,000 → 2,000 with 5 ms, → 1,400 with 10 ms; CPU per
  // reading about −10 %, then −6 % again (A/B, 3 pairs each).
  commitLingerMs: 50,
  commitIdleMs: 5,
  commitGatherMs: 10,
  quotaBytes: 1024 * 1024 * 1024,
  reserveBytes: 64 * 1024 * 1024,
  whenFull: 'block',
  writeBufferBytes: 4 * 1024 * 1024,
  cacheBytes: 2 * 1024 * 1024,
  retainForReplay: false,
  slowWriteMs: 1000,
};

export interface LogStats {
  appended: number;
  committed: number;
  groupCommits: number;
  acked: number;
  evicted: number;
  quarantined: number;
  commitErrors: number;
  backlogRecords: number;
  backlogBytes: number;
  nextSeq: number;
  cursor: number;
  blockedAppends: number;
  full: boolean;
  /** Readings copied out of a damaged log into a fresh one at start. */
  salvaged: number;
  /** Table blocks found damaged at open (checksum) and marked so that LevelDB reports them (leveldb-verify.ts). */
  damagedBlocks: number;
  /** Times the LevelDB's metadata was rebuilt by LevelDB repair at open (openOrRepair). */
  repairs: number;
  /** Unacknowledged readings of a damaged log that could not be read back. */
  lostToCorruption: number;
  /** Bytes of LevelDB's write-ahead log found damaged at open and skipped by LevelDB (checkWal). */
  walBytesDropped: number;
  /** Opens after an unclean stop under `sync: interval | never` that started a new incarnation (load()). */
  newIncarnations: number;
  /**
   * Time of the last group write (LevelDB write, with its fsync under `sync: always`), of the
   * slowest since start, and of all of them (ms): what every QoS 1 PUBACK waits for. A slow disk
   * (an SD card, a busy host) shows here before anywhere else.
   */
  commitWriteMsLast: number;
  commitWriteMsMax: number;
  commitWriteMsTotal: number;
  /** Group writes that took `slowWriteMs` or longer. */
  slowWrites: number;
}

/** What read() (LogRecord, decoded) and readWire() (WireRecord, as stored) return. */
export interface ReadResult<R = LogRecord> {
  records: R[];
  /** Highest sequence examined, including quarantined ones; read again after this. */
  upTo: number;
  quarantined: number[];
}

/** Called once per appended record: `null` when its group commit is done, else why it failed. */
export type CommitCallback = (err: Error | null) => void;

const META = Buffer.from('m:meta');
const SYNC_MARK = Buffer.from('m:sync');
const OPEN_MARK = Buffer.from('m:open');
const FLOOR = Buffer.from('m:floor');
const cbor = new Encoder({ useRecords: false } as ConstructorParameters<typeof Encoder>[0]);
/** Groups smaller than this are followed by a commit linger (see scheduleFlush). */
export const LINGER_BELOW = 64;
/**
 * Heavy traffic (LINGER_BELOW or more records arrived while a group was being written): the next
 * group is gathered until this many records wait, for at most commitGatherMs (see gatherGroup).
 */
export const GATHER_TO = 512;

/** A slow group write is logged at most this often (each one is counted). */
export const SLOW_WRITE_WARN_EVERY_MS = 60_000;
/**
 * Bytes a log iterator reads from LevelDB per round trip to the thread pool (classic-level's
 * `highWaterMarkBytes`; its default, 16 KiB, is less than one 32 KiB frame). With the default a
 * 5,000-record batch took ~16 round trips, each waiting for the thread pool and then for the main
 * thread, which is busy with the cloud's answers during a catch-up: 30 – 60 ms of wall time per batch
 * read, the drain's slowest step. scanForward asks for about what the batch needs instead.
 */
export const READ_AHEAD_MIN = 64 * 1024;
export const READ_AHEAD_MAX = 1024 * 1024;
const SYNC_WRITE = { sync: true } as any;
const NO_SYNC_WRITE = { sync: false } as any;

/**
 * (sequence, size) of the records handed to the forwarder and not yet acked, in sequence order: a
 * queue on a growable Float64Array. A backlog drains through it at 100k+ records/s; an array
 * spliced on every ack allocated a large object each time, and with the gateway's tight heap
 * growth (gateway/cli.ts tuneHeap) those alone kept V8 in back-to-back full collections.
 */
export class SizeQueue {
  private buf = new Float64Array(2048);
  private head = 0;
  private tail = 0;

  get length(): number {
    return (this.tail - this.head) / 2;
  }

  push(seq: number, size: number): void {
    if (this.tail + 2 > this.buf.length) {
      const live = this.tail - this.head;
      const next = live + 2 > this.buf.length / 2 ? new Float64Array(this.buf.length * 2) : this.buf;
      next.set(this.buf.subarray(this.head, this.tail));
      this.buf = next;
      this.head = 0;
      this.tail = live;
    }
    this.buf[this.tail] = seq;
    this.buf[this.tail + 1] = size;
    this.tail += 2;
  }

  /** Remove the entries with sequence <= `seq`; their count and total size. */
  shiftUpTo(seq: number): { records: number; bytes: number } {
    let records = 0;
    let bytes = 0;
    while (this.head < this.tail && this.buf[this.head] <= seq) {
      records++;
      bytes += this.buf[this.head + 1];
      this.head += 2;
    }
    if (this.head === this.tail) this.head = this.tail = 0;
    return { records, bytes };
  }

  /** Forget the entries with sequence > `seq`. */
  dropAfter(seq: number): void {
    while (this.tail > this.head && this.buf[this.tail - 2] > seq) this.tail -= 2;
  }

  /** Forget one entry. */
  remove(seq: number): void {
    for (let i = this.head; i < this.tail; i += 2) {
      if (this.buf[i] !== seq) continue;
      this.buf.copyWithin(i, i + 2, this.tail);
      this.tail -= 2;
      return;
    }
  }
}

/** Tell every record of a group how its commit went; one throwing callback cannot starve the rest. */
export function settle(dones: CommitCallback[], err: Error | null): void {
  for (let i = 0; i < dones.length; i++) {
    try {
      dones[i](err);
    } catch (e) {
      rethrowLater(e);
    }
  }
}

/** A callback's exception, thrown on the next tick: it surfaces, but cannot break the commit loop. */
function rethrowLater(e: unknown): void {
  process.nextTick(() => {
    throw e;
  });
}

export class DurableLog {
  readonly config: LogConfig;
  private ownDb?: Level<Buffer, Buffer>;
  private readonly owner?: DurableLog;
  /** Told when LevelDB reported corruption at open and the log was salvaged; the gateway logs it. */
  onCorruption?: (message: string, detail: object) => void;
  /** Told of what the gateway should log as a warning (a new incarnation after an unclean stop). */
  onWarn?: (message: string, detail: object) => void;
  /** Told the duration (ms) of each successful group write, e.g. for a histogram in /metrics. Must not throw. */
  onCommitWrite?: (ms: number) => void;
  /** The LevelDB this lane lives in (the owner's, which salvage() may replace). */
  private get db(): Level<Buffer, Buffer> {
    return this.owner ? this.owner.db : this.ownDb!;
  }
  private opened = false;
  private closing = false;
  private nextSeq = 1;
  private cursor = 0;
  private incarnationId = '';
  /** The incarnation stored when this open began ('' for a new log). */
  private incarnationAtOpen = '';
  /**
   * Appended records waiting for their group commit, encoded back to back as their frames will
   * hold them (`pending.buf[0, pending.len)`), with the end of each (`pendingEnds`) and its
   * callback (`pendingDones`). Sequences are consecutive, the first being `nextSeq - pendingDones.length`.
   * (No object or Buffer per record: they all live until the commit, long enough for V8 to copy
   * them between generations, which was much of the gateway's GC work under load.)
   */
  private pending: RecordBuffer = { buf: Buffer.allocUnsafe(64 * 1024), len: 0 };
  private pendingEnds: number[] = [];
  private pendingDones: CommitCallback[] = [];
  private committing: Promise<void> | null = null;
  private flushScheduled = false;
  /** Records in the last group committed: decides whether the next one lingers (scheduleFlush). */
  private lastGroupSize = 0;
  /** When onWarn was last told of a slow group write (performance.now(); -Infinity: never). */
  private slowWarnedAt = Number.NEGATIVE_INFINITY;
  private unsyncedWrites = false;
  private syncTimer: NodeJS.Timeout | null = null;
  private diskTimer: NodeJS.Timeout | null = null;
  private diskLimitBytes = Number.POSITIVE_INFINITY;
  /** Sequence and size of each record read but not acked, in order (flat pairs): lets ack() subtract exact sizes. */
  private readonly readSizes = new SizeQueue();
  private readUpTo = 0;
  private spaceWaiters: Array<() => void> = [];
  private deadLetterSeq = 0;
  private listeners = new Set<() => void>();
  readonly stats: LogStats = {
    appended: 0,
    committed: 0,
    groupCommits: 0,
    acked: 0,
    evicted: 0,
    quarantined: 0,
    commitErrors: 0,
    backlogRecords: 0,
    backlogBytes: 0,
    nextSeq: 1,
    cursor: 0,
    blockedAppends: 0,
    full: false,
    salvaged: 0,
    damagedBlocks: 0,
    repairs: 0,
    lostToCorruption: 0,
    walBytesDropped: 0,
    newIncarnations: 0,
    commitWriteMsLast: 0,
    commitWriteMsMax: 0,
    commitWriteMsTotal: 0,
    slowWrites: 0,
  };

  readonly lane: Lane;
  private readonly recPrefix: number;
  private readonly qPrefix: number;
  private readonly ePrefix: number;
  private readonly rEnd: Buffer;
  private readonly nextKey: Buffer;
  private readonly cursorKey: Buffer;
  private readonly ownsDb: boolean;
  /** Acked records above this stay on disk until a checkpoint moves it (window replay needs them). */
  private retainFloor = Number.POSITIVE_INFINITY;
  private deletedUpTo = 0;

  /**
   * `shareWith`: another lane of the same LevelDB (opened and closed by its owner, which must be
   * opened first and closed last).
   */
  constructor(config: Partial<LogConfig> & { dir: string }, opts: { lane?: Lane; shareWith?: DurableLog } = {}) {
    this.config = { ...DEFAULT_LOG_CONFIG, ...config };
    this.lane = opts.lane ?? 'raw';
    const l = LANES[this.lane];
    this.recPrefix = l.rec;
    this.qPrefix = l.quarantine;
    this.ePrefix = l.evicted;
    this.rEnd = Buffer.from([l.rec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    this.nextKey = Buffer.from(`m:${l.suffix}next`);
    this.cursorKey = Buffer.from(`m:${l.suffix}cursor`);
    this.ownsDb = !opts.shareWith;
    this.owner = opts.shareWith;
    // The LevelDB instance itself is made in open(), after the table check: abstract-level opens a
    // new instance by itself on the next microtask, and LevelDB must not read a table before it
    // has been checked (protocols/leveldb-verify.ts).
    if (!opts.shareWith) mkdirSync(this.config.dir, { recursive: true });
  }

  private newLevel(dir: string): Level<Buffer, Buffer> {
    return new Level<Buffer, Buffer>(dir, {
      keyEncoding: 'buffer',
      valueEncoding: 'buffer',
      writeBufferSize: this.config.writeBufferBytes,
      cacheSize: this.config.cacheBytes,
    } as any);
  }

  private rk(seq: number): Buffer {
    return recordKey(seq, this.recPrefix);
  }

  /** The sequence space this lane is forwarded under. */
  get incarnation(): string {
    return this.lane === 'raw' ? this.incarnationId : `${this.incarnationId}.${this.lane}`;
  }

  /** Open the LevelDB, recover the sequence, cursor and backlog size. */
  async open(): Promise<void> {
    let salvageFrom: string | undefined;
    if (this.ownsDb) {
      // Before LevelDB reads a table: a damaged block it would decode can abort the process
      // (leveldb-verify.ts); marked, it becomes a Corruption error handled below.
      const check = await verifyTables(this.config.dir, true);
      if (check.damaged.length > 0) {
        const blocks = check.damaged.reduce((n, d) => n + Math.max(1, d.blocks.length), 0);
        this.stats.damagedBlocks += blocks;
        this.onCorruption?.('damaged LevelDB table blocks found at open (checksum mismatch): marked unreadable so that LevelDB reports them', {
          damaged: check.damaged.map((d) => ({ file: d.file, scope: d.scope, reason: d.reason, blocks: d.blocks.length })),
        });
      }
      for (const u of check.unreadable) this.onCorruption?.('could not verify a LevelDB table at open', u);
      this.ownDb = this.newLevel(this.config.dir);
      const repairsBefore = this.stats.repairs;
      await this.openOrRepair();
      try {
        await this.load();
        if (this.stats.repairs > repairsBefore) await this.countRepairLoss();
        else await this.checkWal();
        // load() read every record of this lane; the aggregate lane is small: read it too, so that
        // corruption anywhere is handled here, by the owner of the LevelDB.
        for await (const _ of this.db.iterator({ gt: recordKey(0, LANES.agg.rec), lt: recordKey(2 ** 53, LANES.agg.rec) }));
      } catch (err) {
        if (!isLevelCorruption(err)) throw err;
        salvageFrom = await this.startOver(err as Error);
      }
    } else {
      await this.load();
      // The owner found that LevelDB lost data at this open (a repair, a damaged write-ahead log):
      // this lane's share of it.
      const o = this.owner!;
      if (o.stats.walBytesDropped > 0 || o.stats.repairs > 0) {
        const missing = await this.missing();
        if (missing > 0) {
          this.stats.lostToCorruption += missing;
          this.onCorruption?.(`${this.lane} lane: records lost with the damaged parts of the log`, { missing });
        }
      }
    }
    this.startTimers();
    if (salvageFrom) await this.salvage(salvageFrom);
  }

  /**
   * Open the LevelDB; when it cannot be opened because its metadata is damaged (MANIFEST, CURRENT:
   * LevelDB says Corruption), rebuild that metadata from the tables and write-ahead logs with
   * LevelDB's repair, which keeps every record it can read, and open again. Without this a damaged
   * MANIFEST stops every start. If even that fails, the damaged directory is moved aside and a
   * fresh log started (startOver), so the gateway keeps taking readings.
   */
  private async openOrRepair(): Promise<void> {
    try {
      await this.db.open();
      return;
    } catch (err) {
      if (!isLevelCorruption(err)) throw err;
      this.onCorruption?.('LevelDB could not open the log (damaged metadata): rebuilding it from its tables with LevelDB repair', { err: levelErrorMessage(err) });
    }
    const repair = (Level as unknown as { repair?: (dir: string) => Promise<void> }).repair;
    try {
      if (typeof repair !== 'function') throw new Error('this LevelDB binding has no repair');
      await repair.call(Level, this.config.dir);
      this.ownDb = this.newLevel(this.config.dir);
      await this.db.open();
      this.stats.repairs++;
    } catch (err) {
      this.onCorruption?.('LevelDB repair failed: moving the damaged log aside and starting a fresh one', { err: (err as Error).message });
      await this.moveAside();
    }
  }

  /** Close the LevelDB, rename its directory `<dir>.damaged-<time>` (kept for inspection), open an empty one there. */
  private async moveAside(): Promise<string> {
    await this.db.close().catch(() => undefined);
    const aside = await moveAside(this.config.dir);
    this.ownDb = this.newLevel(this.config.dir);
    await this.db.open();
    return aside;
  }

  /**
   * Readings between the cursor and the next sequence that are not there, and were neither evicted
   * (drop-oldest records each eviction, 'e' keys) nor quarantined: lost. Only called when LevelDB
   * said it lost something (a repair, a damaged write-ahead log); a group whose write failed also
   * leaves a gap, of readings never acknowledged.
   */
  private async missing(): Promise<number> {
    let gone = 0;
    for await (const value of this.db.values({ gt: recordKey(this.cursor, this.ePrefix), lt: recordKey(2 ** 53, this.ePrefix) })) {
      if (value.length >= 4) gone += value.readUInt32BE(0);
    }
    for await (const value of this.db.values({ gt: recordKey(this.cursor, this.qPrefix), lt: recordKey(2 ** 53, this.qPrefix) })) {
      try {
        gone += Number((decode(value) as { records?: number }).records ?? 1);
      } catch {
        gone += 1;
      }
    }
    return Math.max(0, this.nextSeq - 1 - this.cursor - this.stats.backlogRecords - gone);
  }

  /** After a repair: readings no longer there were in blocks LevelDB could not read. */
  private async countRepairLoss(): Promise<void> {
    const missing = await this.missing();
    this.stats.lostToCorruption += missing;
    this.onCorruption?.('log repaired', { backlog: this.stats.backlogRecords, missing });
    await this.lostCommits('LevelDB repaired the log: its last commits may be lost with their sequence numbers, so it goes on as a new incarnation');
  }

  /** After LevelDB lost data at this open: a new incarnation, unless load() started one already. */
  private async lostCommits(why: string): Promise<void> {
    if (this.incarnationAtOpen !== this.incarnationId) return;
    const meta = await this.db.get(META);
    if (meta !== undefined) await this.newIncarnation(meta, why);
  }

  /**
   * Go on as a new incarnation of this log (a new sequence space at the cloud): after the sequence
   * counter may have gone back past numbers the cloud already has. `meta`: the stored META.
   */
  private async newIncarnation(meta: Buffer, why: string): Promise<void> {
    const old = JSON.parse(meta.toString());
    this.incarnationId = randomBytes(8).toString('hex');
    await this.db.put(META, Buffer.from(JSON.stringify({ ...old, incarnation: this.incarnationId, previous: old.incarnation })), { sync: true } as any);
    this.stats.newIncarnations++;
    this.onWarn?.(why, { previous: old.incarnation, incarnation: this.incarnationId });
  }

  /**
   * LevelDB skips a damaged stretch of its write-ahead log at open and says so only in its info log
   * (leveldb-verify.ts walDropped): the readings in it, committed and acknowledged, would be gone
   * without a trace. Reported, and the readings missing between the cursor and the next sequence
   * counted as lost (missing()). Readings at the very end of the damaged log leave no gap to count;
   * the dropped bytes are kept in `walBytesDropped`.
   */
  private async checkWal(): Promise<void> {
    const dropped = await walDropped(this.config.dir);
    if (dropped.bytes === 0) return;
    this.stats.walBytesDropped += dropped.bytes;
    const missing = await this.missing();
    this.stats.lostToCorruption += missing;
    this.onCorruption?.('LevelDB skipped damaged parts of its write-ahead log at open: the readings in them are lost', { bytes: dropped.bytes, reasons: dropped.reasons, missing });
    await this.lostCommits('LevelDB skipped damaged parts of its write-ahead log: sequence numbers may be used again, so the log goes on as a new incarnation');
  }

  /**
   * LevelDB reported a damaged file (a flipped bit on an SD card, a torn write). Crash-looping on it
   * would lose everything that arrives from now on, so: move the damaged directory aside (kept for
   * inspection), start a fresh log with a new incarnation, and let salvage() copy over whatever
   * unacknowledged readings can still be read. Returns the directory moved aside.
   */
  private async startOver(err: Error): Promise<string> {
    const aside = await this.moveAside();
    await this.load();
    this.onCorruption?.('LevelDB reported a damaged log: moved it aside and started a fresh one; salvaging what can be read', { aside, err: err.message });
    return aside;
  }

  /** Copy the readable unacknowledged raw readings of a damaged log into this one, in order. */
  private async salvage(aside: string): Promise<void> {
    const old = this.newLevel(aside);
    let salvaged = 0;
    let expected = 0;
    const pending: Array<Promise<void>> = [];
    try {
      await old.open();
      const num = async (k: string) => {
        try {
          const v = await old.get(Buffer.from(k));
          return v ? Number(v.toString()) : undefined;
        } catch {
          return undefined;
        }
      };
      const cursor = (await num('m:cursor')) ?? 0;
      const next = await num('m:next');
      if (next !== undefined) expected = Math.max(0, next - 1 - cursor);
      const end = recordKey(2 ** 53, LANES.raw.rec);
      let after = cursor;
      for (;;) {
        try {
          for await (const [key, value] of old.iterator({ gt: recordKey(after, LANES.raw.rec), lt: end })) {
            const ok: WireRecord[] = [];
            // Records our own checksum rejects are lost with the block around them.
            parseEntry(seqOfKey(key), value, after, ok, []);
            after = seqOfKey(key);
            for (const w of ok) {
              if (w.kind !== 'raw') continue;
              let r: LogRecord;
              try {
                r = decodeWire(w);
              } catch {
                continue;
              }
              const { kind: _k, seq: _s, ...entry } = r as Extract<LogRecord, { kind: 'raw' }>;
              pending.push(this.append({ kind: 'raw', ...entry }).committed);
              salvaged++;
            }
            if (pending.length >= 2000) await Promise.all(pending.splice(0));
          }
          break;
        } catch {
          // An unreadable block: probe forward for the next readable key.
          let d = 1;
          let resumed = false;
          while (d < 2 ** 45 && !resumed) {
            try {
              let found: number | undefined;
              for await (const key of old.keys({ gt: recordKey(after + d, LANES.raw.rec), lt: end, limit: 1 })) found = seqOfKey(key);
              if (found === undefined) break;
              after = found - 1;
              resumed = true;
            } catch {
              d *= 2;
            }
          }
          if (!resumed) break;
        }
      }
    } catch {
      // nothing more can be read
    } finally {
      await Promise.all(pending).catch(() => undefined);
      await old.close().catch(() => undefined);
    }
    this.stats.salvaged += salvaged;
    this.stats.lostToCorruption += Math.max(0, expected - salvaged);
    this.onCorruption?.('salvage of the damaged log finished', { aside, salvaged, lost: Math.max(0, expected - salvaged) });
  }

  private startTimers(): void {
    this.opened = true;
    this.syncStats();
    if (this.config.sync === 'interval') {
      this.syncTimer = setInterval(() => void this.periodicSync(), this.config.syncIntervalMs);
      this.syncTimer.unref();
    }
    void this.checkDisk();
    this.diskTimer = setInterval(() => void this.checkDisk(), 5000);
    this.diskTimer.unref();
  }

  private async load(): Promise<void> {
    const meta = await this.db.get(META);
    this.incarnationAtOpen = meta === undefined ? '' : JSON.parse(meta.toString()).incarnation;
    // The process stopped without closing the log (crash, SIGKILL, power cut).
    const unclean = this.ownsDb && (await this.db.get(OPEN_MARK)) !== undefined;
    if (meta === undefined) {
      this.incarnationId = randomBytes(8).toString('hex');
      await this.db.put(META, Buffer.from(JSON.stringify({ incarnation: this.incarnationId, created: Date.now(), version: 1 })), { sync: true } as any);
    } else if (unclean && this.config.sync !== 'always') {
      // Without an fsync per commit, a power cut can take the last commits with it, the sequence
      // counter's too, after the forwarder sent them and the cloud acknowledged them: new readings
      // would get those sequence numbers again, and the cloud would take them for replays and
      // drop them. A new incarnation is a new sequence space at the cloud, which starts where
      // this log's cursor is (x-sluice-acked): readings the cloud already had are rewritten onto
      // themselves (idempotent points), none is dropped.
      await this.newIncarnation(meta, `the log was not closed cleanly and sync is "${this.config.sync}": its last commits may be lost with their sequence numbers, so it goes on as a new incarnation`);
    } else {
      this.incarnationId = JSON.parse(meta.toString()).incarnation;
    }
    if (this.ownsDb) await this.db.put(OPEN_MARK, Buffer.from(String(Date.now())), { sync: true } as any);
    const next = await this.db.get(this.nextKey);
    const cursor = await this.db.get(this.cursorKey);
    this.cursor = cursor ? Number(cursor.toString()) : 0;
    this.nextSeq = next ? Number(next.toString()) : 1;
    // Records at or below the cursor were acked before a crash cut the delete short.
    if (this.config.retainForReplay) {
      const floor = await this.db.get(FLOOR);
      this.retainFloor = floor ? Number(floor.toString()) : 0;
    } else {
      await this.db.del(FLOOR);
    }
    this.deletedUpTo = Math.min(this.cursor, this.retainFloor);
    await this.clearAcked(0, this.deletedUpTo);
    // Recount the backlog (keys and value sizes only) and make sure nextSeq is past every record.
    let records = 0;
    let bytes = 0;
    for await (const r of this.stored(this.cursor, false)) {
      records++;
      bytes += r.size;
      if (r.seq >= this.nextSeq) this.nextSeq = r.seq + 1;
    }
    if (this.cursor >= this.nextSeq) this.nextSeq = this.cursor + 1;
    for await (const key of this.db.keys({ gte: Buffer.from([0x78]), lt: Buffer.from([0x79]), reverse: true, limit: 1 })) {
      this.deadLetterSeq = seqOfKey(key);
    }
    this.stats.backlogRecords = records;
    this.stats.backlogBytes = bytes;
    this.readUpTo = this.cursor;
  }

  /**
   * Append a record. The sequence number is assigned now; `committed` resolves once the record is
   * durable. With `whenFull: block` and a full log, commit waits for space (that is the
   * backpressure: the PUBACK is delayed).
   */
  append(entry: LogEntry): { seq: number; committed: Promise<void> } {
    let done!: CommitCallback;
    const committed = new Promise<void>((resolve, reject) => {
      done = (err) => (err ? reject(err) : resolve());
    });
    const seq = this.appendWith(entry, done);
    return { seq, committed };
  }

  /**
   * append() without a promise per record (the ingest hot path): `done` is called once, after the
   * record's group commit, with null or the error. Returns the sequence (0 if the log is closed, in
   * which case `done` gets SLUICE_LOG_CLOSED on the next tick).
   */
  appendWith(entry: LogEntry, done: CommitCallback): number {
    if (!this.opened || this.closing) {
      const err = new SluiceError('SLUICE_LOG_CLOSED', 'the log is closed', { retryable: true });
      process.nextTick(() => this.settleGroup(0, -1, [done], err));
      return 0;
    }
    const seq = this.nextSeq++;
    appendRecord(this.pending, seq, entry);
    this.pendingEnds.push(this.pending.len);
    this.pendingDones.push(done);
    this.stats.appended++;
    this.scheduleFlush();
    return seq;
  }

  /**
   * Told how each group commit went (sequences `first..last`, their records' callbacks in order,
   * null or the error) instead of the log calling those callbacks itself; it must call them (log.ts
   * `settle`). Lets the one appender of a lane do its per-record work without a closure per record
   * kept alive until the commit (gateway/ingest.ts). A refused append (log closed) comes as an
   * empty range with its one callback.
   */
  onCommitted?: (first: number, last: number, dones: CommitCallback[], err: Error | null) => void;

  private settleGroup(first: number, last: number, dones: CommitCallback[], err: Error | null): void {
    if (!this.onCommitted) return settle(dones, err);
    try {
      this.onCommitted(first, last, dones, err);
    } catch (e) {
      rethrowLater(e);
    }
  }

  /** Bytes of appended-but-uncommitted records plus the backlog: what the quota is checked against. */
  private get usedBytes(): number {
    return this.stats.backlogBytes;
  }

  private get limitBytes(): number {
    return Math.min(this.config.quotaBytes, this.diskLimitBytes);
  }

  isFull(extra = 0): boolean {
    return this.usedBytes + extra > this.limitBytes;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.committing) return;
    this.flushScheduled = true;
    const go = () => {
      this.flushScheduled = false;
      void this.flush();
    };
    // setImmediate gathers every append made in this turn of the event loop into one group; a
    // linger gathers publishes that trickle in one by one (fewer fsyncs, less SD-card wear). Only
    // after a small group, though: after a large one traffic is heavy, and its publishers are
    // waiting for this very commit (their PUBACKs) before they send more, so a linger would only
    // stretch every cycle; the next group gathers by itself while this one is written.
    const linger = this.config.commitLingerMs;
    if (linger <= 0 || this.lastGroupSize >= LINGER_BELOW) {
      setImmediate(go);
      return;
    }
    // The linger ends at whichever comes first: `linger` ms; a check every `idle` ms that finds no
    // append since the previous one (a lone device waiting for its PUBACK gains nothing from more
    // waiting); LINGER_BELOW records waiting (traffic is heavy after all).
    this.whileAppending(LINGER_BELOW, Math.max(1, Math.min(this.config.commitIdleMs, linger)), linger, go);
  }

  /**
   * Calls `done` once `target` records are pending, a check every `step` ms finds no append since
   * the previous one, `most` ms have passed, or the log is closing: the commit linger at low rates
   * (scheduleFlush) and the gathering under heavy traffic (gatherGroup). No clock is read per
   * append: the checks compare counts; the time is read at each check, since a check can come late
   * when the event loop is busy.
   */
  private whileAppending(target: number, step: number, most: number, done: () => void): void {
    const until = performance.now() + most;
    let seen = this.pendingDones.length;
    const check = (): void => {
      const n = this.pendingDones.length;
      const left = until - performance.now();
      if (n >= target || n <= seen || left <= 0 || this.closing) return done();
      seen = n;
      setTimeout(check, Math.min(step, left));
    };
    setTimeout(check, Math.min(step, most));
  }

  private async flush(): Promise<void> {
    if (this.committing || this.pendingDones.length === 0) return;
    const run = this.commitGroups();
    this.committing = run;
    try {
      await run;
    } finally {
      this.committing = null;
      if (this.pendingDones.length > 0) this.scheduleFlush();
    }
  }

  private async commitGroups(): Promise<void> {
    let current = await this.startGroup();
    while (current) {
      const g = current;
      const err = await g.write;
      if (err === null) {
        this.unsyncedWrites = true;
        this.stats.groupCommits++;
        this.lastGroupSize = g.n;
        this.stats.committed += g.n;
        this.stats.backlogRecords += g.n;
        this.stats.backlogBytes += g.bytes;
        this.syncStats();
      }
      if (err === null && this.shouldGather()) {
        // Heavy traffic: publishers kept sending while this group was written, so they are not
        // all waiting for its PUBACKs. Settle it, then let the next group grow before writing it:
        // each write with fsync costs ~0.2 ms of CPU (a thread-pool hand-off, the syscalls, a VM
        // exit to kick the disk), which at a group per ~2 ms was a sixth of the gateway's CPU.
        this.settleGroup(g.first, g.last, g.dones, err);
        this.notify();
        await this.gatherGroup();
        current = await this.startGroup();
        continue;
      }
      // The next group goes to LevelDB before this one is settled: settling (its PUBACKs) takes
      // main-thread time during which the disk would otherwise wait (a 2-core probe: ~1 ms between
      // one group's write ending and the next one's starting, against ~1.5 ms for a write).
      // startGroup() returns at its first await, which is after the write was sent or when it has
      // to wait for space: either way this group is settled before anything waits.
      const next = this.startGroup();
      this.settleGroup(g.first, g.last, g.dones, err);
      if (err === null) this.notify();
      current = await next;
    }
  }

  /**
   * Gather the next group after a write under heavy traffic: LINGER_BELOW or more records arrived
   * while it was written (publishers with room in their window, not waiting for this commit), but
   * fewer than GATHER_TO. Off with a commit linger of 0. Publishers that wait for each PUBACK (a
   * window of one) leave nothing pending when a write ends, so they never wait here.
   */
  private shouldGather(): boolean {
    const n = this.pendingDones.length;
    return this.config.commitLingerMs > 0 && n >= LINGER_BELOW && n < GATHER_TO && !this.closing;
  }

  /**
   * Resolves once GATHER_TO records wait, a 1 ms check finds no append since the previous one
   * (the publishers are waiting for us after all), or commitGatherMs (capped by the linger) have
   * passed.
   */
  private gatherGroup(): Promise<void> {
    const most = Math.max(1, Math.min(this.config.commitGatherMs, this.config.commitLingerMs));
    return new Promise((resolve) => this.whileAppending(GATHER_TO, 1, most, resolve));
  }

  /**
   * Cut the next group (the first `maxGroup` pending records) and send its write, or undefined
   * when nothing is pending. The write is sent before the first await unless there is no room, so
   * it goes to LevelDB right away.
   */
  private async startGroup(): Promise<{ first: number; last: number; n: number; bytes: number; dones: CommitCallback[]; write: Promise<Error | null> } | undefined> {
    while (this.pendingDones.length > 0) {
      // Their frames are cut (runs of records up to FRAME_MAX_BYTES each) and copied out now, and
      // the pending buffer moved up, so appends carry on while the group is written.
      const n = Math.min(this.pendingDones.length, this.config.maxGroup);
      const first = this.nextSeq - this.pendingDones.length;
      const dones = this.pendingDones.splice(0, n);
      const ends = this.pendingEnds.splice(0, n);
      const src = this.pending.buf;
      const frames: Array<[number, Buffer]> = [];
      let from = 0;
      let start = 0;
      for (let i = 0; i < n; i++) {
        const recStart = i === 0 ? 0 : ends[i - 1];
        if (recStart > start && ends[i] - start > FRAME_MAX_BYTES) {
          frames.push([first + i - 1, frameOf(src, start, recStart, i - from)]);
          from = i;
          start = recStart;
        }
      }
      const groupBytes = ends[n - 1];
      frames.push([first + n - 1, frameOf(src, start, groupBytes, n - from)]);
      const bytes = groupBytes + frames.length * FRAME_OVERHEAD;
      src.copyWithin(0, groupBytes, this.pending.len);
      this.pending.len -= groupBytes;
      for (let i = 0; i < this.pendingEnds.length; i++) this.pendingEnds[i] -= groupBytes;
      const last = first + n - 1;
      if (this.isFull(bytes)) {
        const ok = await this.makeRoom(bytes);
        if (!ok) {
          // Closing while blocked: these records were never committed, so never acknowledged.
          const err = new SluiceError('SLUICE_LOG_CLOSED', 'the log closed while waiting for space', { retryable: true });
          this.settleGroup(first, last, dones, err);
          continue;
        }
      }
      return { first, last, n, bytes, dones, write: this.writeGroup(frames, last) };
    }
    return undefined;
  }

  /** One LevelDB batch for a group's frames and the next sequence; null when durable, else the error. */
  private async writeGroup(frames: Array<[number, Buffer]>, last: number): Promise<Error | null> {
    try {
      // One put per frame, a few per group. A chained batch: abstract-level's array form clones
      // every operation with the options spread into it. Keys and values are already buffers,
      // so the buffer encodings pass them through untouched.
      const batch = this.db.batch();
      for (const [lastSeq, frame] of frames) batch.put(this.rk(lastSeq), frame);
      batch.put(this.nextKey, Buffer.from(String(last + 1)));
      const t0 = performance.now();
      await batch.write(this.config.sync === 'always' ? SYNC_WRITE : NO_SYNC_WRITE);
      this.timedCommitWrite(performance.now() - t0);
      return null;
    } catch (err) {
      this.stats.commitErrors++;
      return new SluiceError('SLUICE_LOG_FULL', `log commit failed: ${(err as Error).message}`, { cause: err, retryable: true });
    }
  }

  private timedCommitWrite(ms: number): void {
    const st = this.stats;
    st.commitWriteMsLast = ms;
    if (ms > st.commitWriteMsMax) st.commitWriteMsMax = ms;
    st.commitWriteMsTotal += ms;
    this.onCommitWrite?.(ms);
    if (ms >= this.config.slowWriteMs) {
      st.slowWrites++;
      const now = performance.now();
      if (now - this.slowWarnedAt >= SLOW_WRITE_WARN_EVERY_MS) {
        this.slowWarnedAt = now;
        this.onWarn?.(`a group write of the log took ${Math.round(ms)} ms: QoS 1 acknowledgements wait for the disk (worn SD card? busy disk?)`, {
          ms: Math.round(ms),
          sync: this.config.sync,
          slowWrites: st.slowWrites,
          slowWriteMs: this.config.slowWriteMs,
        });
      }
    }
  }

  /** Wait (block) or evict (drop-oldest) until `bytes` more fit. False if the log closed meanwhile. */
  private async makeRoom(bytes: number): Promise<boolean> {
    this.stats.full = true;
    if (this.config.whenFull === 'drop-oldest') {
      await this.evictOldest(bytes);
      this.stats.full = this.isFull(bytes);
      if (!this.stats.full) return true;
    }
    this.stats.blockedAppends++;
    while (this.isFull(bytes)) {
      if (this.closing) return false;
      // Nothing at all in the backlog and still too big: the reserve/quota is smaller than one group.
      if (this.stats.backlogRecords === 0) break;
      await new Promise<void>((r) => this.spaceWaiters.push(r));
    }
    this.stats.full = false;
    return true;
  }

  /**
   * Evict the oldest records not yet handed to the forwarder until `bytes` more fit: whole frames,
   * from the first one that starts after what the forwarder has read.
   */
  private async evictOldest(bytes: number): Promise<void> {
    let from = this.readUpTo;
    while (this.isFull(bytes)) {
      const ops: Array<{ type: 'put' | 'del'; key: Buffer; value?: Buffer }> = [];
      let freed = 0;
      let records = 0;
      for await (const [key, value] of this.db.iterator({ gt: this.rk(from), lt: this.rEnd, limit: 1000 })) {
        from = seqOfKey(key);
        const ok: WireRecord[] = [];
        const bad: CorruptPiece[] = [];
        parseEntry(from, value, -1, ok, bad, false);
        // A frame the forwarder has read from (or that holds acked records kept for replay) stays.
        if (ok.length === 0 || ok[0].seq <= this.readUpTo || bad.length > 0) continue;
        // The frame goes, and a note of how many records it held (missing() tells them from a loss).
        const count = Buffer.allocUnsafe(4);
        count.writeUInt32BE(ok.length, 0);
        ops.push({ type: 'del', key }, { type: 'put', key: recordKey(from, this.ePrefix), value: count });
        for (const r of ok) freed += r.size;
        records += ok.length;
        if (!this.isFull(bytes - freed)) break;
      }
      if (ops.length === 0) return;
      await this.db.batch(ops as any);
      this.stats.evicted += records;
      this.stats.backlogRecords -= records;
      this.stats.backlogBytes -= freed;
    }
    this.syncStats();
  }

  /**
   * Read up to `limit` records (and about `maxBytes`) with sequence > `after`, in order, decoded.
   * Corrupt records are quarantined and skipped.
   */
  async read(after: number, limit: number, maxBytes = 8 * 1024 * 1024): Promise<ReadResult> {
    const r = await this.readWire(after, limit, maxBytes);
    const records: LogRecord[] = [];
    for (const w of r.records) {
      try {
        records.push(decodeWire(w));
      } catch (err) {
        // Checksummed but undecodable: written by a broken encoder, not damaged on disk.
        await this.quarantineSeqs([w.seq], (err as Error).message);
        r.quarantined.push(w.seq);
      }
    }
    return { records, upTo: r.upTo, quarantined: r.quarantined };
  }

  /** read() as stored, not decoded. */
  async readWire(after: number, limit: number, maxBytes = 8 * 1024 * 1024): Promise<ReadResult<WireRecord>> {
    const records: WireRecord[] = [];
    const r = await this.scanForward(after, limit, maxBytes, collect(records));
    return { records, upTo: r.upTo, quarantined: r.quarantined };
  }

  /**
   * read() straight into a batch body: what the forwarder sends. No object per record (see
   * BatchBodyBuilder); `body.count` records were added.
   */
  async readBatch(after: number, limit: number, maxBytes: number, body: BatchBodyBuilder): Promise<{ upTo: number; quarantined: number[] }> {
    body.reset();
    return this.scanForward(after, limit, maxBytes, body);
  }

  /**
   * Hand the records with sequence > `after` to `sink`, in order, up to `limit` records or about
   * `maxBytes`; quarantine damaged ones on the way. Returns the highest sequence examined.
   */
  private async scanForward(after: number, limit: number, maxBytes: number, sink: RecordSink): Promise<{ upTo: number; quarantined: number[] }> {
    // Never below the cursor: acked records may still be on disk (retained, or not yet deleted).
    if (after < this.cursor) after = this.cursor;
    const quarantined: number[] = [];
    let upTo = after;
    let bytes = 0;
    let count = 0;
    const sizes = this.readSizes;
    const track: RecordSink = {
      record: (frame, start, mapStart, end, seq, kind, fl, size) => {
        sink.record(frame, start, mapStart, end, seq, kind, fl, size);
        upTo = seq;
        if (seq > this.readUpTo) {
          sizes.push(seq, size);
          this.readUpTo = seq;
        }
        bytes += size;
        return ++count < limit && bytes < maxBytes;
      },
    };
    // nextv() fetches many entries per call: one promise per chunk, not one per entry. A chunk is
    // sized to what `limit` records take at the backlog's average record size, so that one call
    // usually brings the whole batch and little of the next one.
    const perRecord = this.stats.backlogRecords > 0 ? this.stats.backlogBytes / this.stats.backlogRecords : 128;
    const highWaterMarkBytes = Math.round(Math.max(READ_AHEAD_MIN, Math.min(READ_AHEAD_MAX, maxBytes, limit * perRecord)));
    const it = this.db.iterator({ gt: this.rk(after), lt: this.rEnd, highWaterMarkBytes });
    const bad: CorruptPiece[] = [];
    try {
      outer: for (;;) {
        const entries = await it.nextv(256);
        if (entries.length === 0) break;
        for (const [key, value] of entries) {
          const keySeq = seqOfKey(key);
          const whole = parseEntry(keySeq, value, after, track, bad);
          if (bad.length > 0) for (const q of await this.quarantinePieces(key, value, bad.splice(0))) quarantined.push(q);
          // Everything up to the entry's key was looked at (its key bounds its sequences).
          if (whole) upTo = Math.max(upTo, keySeq);
          if (!whole || count >= limit || bytes >= maxBytes) break outer;
        }
      }
    } finally {
      await it.close();
    }
    return { upTo, quarantined };
  }

  /**
   * Move damaged or refused pieces of one stored entry to the quarantine area ('q' prefix) with the
   * reason, and rewrite the entry without them (or delete it when nothing is left), atomically.
   * Returns the sequences quarantined.
   */
  private async quarantinePieces(key: Buffer, value: Uint8Array, pieces: CorruptPiece[]): Promise<number[]> {
    const v = Buffer.from(value.buffer, value.byteOffset, value.length);
    const ops: Array<{ type: 'put' | 'del'; key: Buffer; value?: Buffer }> = [];
    const seqs: number[] = [];
    let records = 0;
    let bytes = 0;
    for (const p of pieces) {
      const stored = v.subarray(Math.max(0, p.start), p.end);
      ops.push({ type: 'put', key: recordKey(p.seq, this.qPrefix), value: Buffer.from(cbor.encode({ reason: p.reason, at: Date.now(), value: stored, records: p.records })) });
      seqs.push(p.seq);
      records += p.records;
      bytes += p.size;
    }
    // What is left of a frame: the records outside the pieces, in order, under the same key.
    const keep: Buffer[] = [];
    if (pieces.every((p) => p.start >= FRAME_HEAD)) {
      let pos = FRAME_HEAD;
      for (const p of [...pieces].sort((x, y) => x.start - y.start)) {
        if (p.start > pos) keep.push(v.subarray(pos, p.start));
        pos = p.end;
      }
      if (pos < v.length) keep.push(v.subarray(pos));
    }
    const rest = keep.length > 0 ? encodeFrame(keep, 0, keep.length, keep.reduce((n, k) => n + k.length, 0)) : undefined;
    const left: WireRecord[] = [];
    if (rest) parseEntry(seqOfKey(key), rest, -1, left, [], false);
    if (rest && left.length > 0) {
      rest.writeUInt32BE(left.length, 4);
      ops.push({ type: 'put', key, value: rest });
    } else {
      ops.push({ type: 'del', key });
    }
    await this.db.batch(ops as any);
    this.stats.quarantined += records;
    this.stats.backlogRecords -= records;
    this.stats.backlogBytes = this.stats.backlogRecords > 0 ? Math.max(0, this.stats.backlogBytes - bytes) : 0;
    this.syncStats();
    return seqs;
  }

  /** Quarantine records already read (e.g. refused by the cloud with 400). */
  async quarantineSeqs(seqs: number[], reason: string): Promise<void> {
    for (const seq of seqs) {
      for await (const [key, value] of this.db.iterator({ gte: this.rk(seq), lt: this.rEnd, limit: 1 })) {
        const ok: WireRecord[] = [];
        parseEntry(seqOfKey(key), value, seq - 1, ok, [], false);
        const r = ok.find((x) => x.seq === seq);
        if (!r) continue;
        await this.quarantinePieces(key, value, [{ seq, records: 1, reason, start: r.start, end: r.start === -1 ? value.length : r.end, size: r.size }]);
        // If the forwarder already read it, forget its size so ack() does not count it twice.
        this.readSizes.remove(seq);
      }
    }
  }

  /** The cloud durably holds everything up to `seq`: persist the cursor, then drop those records. */
  async ack(seq: number): Promise<void> {
    if (seq <= this.cursor) return;
    await this.db.put(this.cursorKey, Buffer.from(String(seq)), { sync: this.config.sync === 'always' } as any);
    this.cursor = seq;
    let { records: freedRecords, bytes: freedBytes } = this.readSizes.shiftUpTo(seq);
    if (this.readUpTo < seq) {
      // Acked past what we read (cannot normally happen): recount that stretch from disk.
      for await (const r of this.stored(this.readUpTo, false)) {
        if (r.seq > seq) break;
        freedRecords++;
        freedBytes += r.size;
      }
      this.readUpTo = seq;
    }
    await this.deleteAcked();
    this.stats.acked += freedRecords;
    this.stats.backlogRecords -= freedRecords;
    this.stats.backlogBytes -= freedBytes;
    this.syncStats();
    this.wakeSpaceWaiters();
  }

  /** Delete acknowledged records, except those above the retain floor (kept for window replay). */
  private deleting: Promise<void> = Promise.resolve();

  /**
   * Delete acknowledged records in the background, one range at a time: readers never look at or
   * below the cursor, so the forwarder need not wait for LevelDB's per-key deletes (a crash before
   * they finish leaves records that open() removes). close() waits for the last one.
   */
  private deleteAcked(): Promise<void> {
    const upTo = Math.min(this.cursor, this.retainFloor);
    if (upTo <= this.deletedUpTo) return Promise.resolve();
    const from = this.deletedUpTo;
    this.deletedUpTo = upTo;
    this.deleting = this.deleting
      .then(() => this.clearAcked(from, upTo))
      .catch(() => {
        // A failed delete only leaves acked records on disk; open() clears them.
      });
    return Promise.resolve();
  }

  /** Delete the records in (after, upTo] and the eviction notes there (sequences start at 1). */
  private async clearAcked(after: number, upTo: number): Promise<void> {
    await this.db.clear({ gt: this.rk(after), lte: this.rk(upTo) });
    await this.db.clear({ gt: recordKey(after, this.ePrefix), lte: recordKey(upTo, this.ePrefix) });
  }

  /**
   * Store derived state (`ops`, e.g. the window engine's snapshot) atomically with the retain floor:
   * records above `floor` are kept, even once acked, so that state can be rebuilt by replaying them.
   */
  async checkpoint(ops: Array<{ type: 'put' | 'del'; key: Buffer; value?: Buffer }>, floor: number): Promise<void> {
    await this.db.batch([...ops, { type: 'put', key: FLOOR, value: Buffer.from(String(floor)) }] as any, { sync: this.config.sync !== 'never' } as any);
    this.retainFloor = floor;
    await this.deleteAcked();
  }

  /** Records with sequence > `after`, in order, for rebuilding derived state; no forwarding side effects. */
  async *scan(after: number): AsyncGenerator<LogRecord> {
    for await (const r of this.stored(after, true)) {
      try {
        yield decodeWire(r);
      } catch {
        // corrupt: the forwarder quarantines it when it gets there
      }
    }
  }

  /**
   * Stored records with sequence > `after`, in order, as they are on disk; damaged ones are skipped
   * (with `verify`; without it checksums are not computed, e.g. to count the backlog at open).
   */
  private async *stored(after: number, verify: boolean): AsyncGenerator<WireRecord> {
    for await (const [key, value] of this.db.iterator({ gt: this.rk(after), lt: this.rEnd, highWaterMarkBytes: READ_AHEAD_MAX })) {
      const ok: WireRecord[] = [];
      parseEntry(seqOfKey(key), value, after, ok, [], verify);
      yield* ok;
    }
  }

  /** Forget what was handed out after `seq` (the forwarder will read it again, e.g. after a 409). */
  rewind(seq: number): void {
    if (seq < this.cursor) seq = this.cursor;
    this.readSizes.dropAfter(seq);
    this.readUpTo = Math.max(seq, this.cursor);
  }

  get ackedSeq(): number {
    return this.cursor;
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** Called after each commit: the forwarder waits on this instead of polling. */
  onCommit(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private notify(): void {
    for (const fn of this.listeners) fn();
  }

  private wakeSpaceWaiters(): void {
    const w = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const r of w) r();
  }

  /** Keep some room on the filesystem whatever the quota says: never run it out of space. */
  async checkDisk(): Promise<void> {
    try {
      const s = await statfs(this.config.dir);
      const free = Number(s.bavail) * Number(s.bsize);
      this.diskLimitBytes = this.stats.backlogBytes + Math.max(0, free - this.config.reserveBytes);
    } catch {
      // statfs unsupported: rely on the quota alone.
    }
  }

  private async periodicSync(): Promise<void> {
    if (!this.unsyncedWrites || !this.opened || this.closing) return;
    this.unsyncedWrites = false;
    // A sync write flushes LevelDB's write-ahead log, covering every earlier unsynced write.
    await this.db.put(SYNC_MARK, Buffer.from(String(Date.now())), { sync: true } as any).catch(() => {
      this.unsyncedWrites = true;
    });
  }

  /** Store a rejected MQTT payload for later inspection (`sluice gateway dead-letter`). Bounded. */
  async deadLetter(entry: { topic: string; client: string; reason: string; payload: Uint8Array }): Promise<void> {
    if (!this.opened || this.closing) return;
    const n = ++this.deadLetterSeq;
    const payload = entry.payload.length > 4096 ? entry.payload.subarray(0, 4096) : entry.payload;
    const ops: Array<{ type: 'put' | 'del'; key: Buffer; value?: Buffer }> = [
      { type: 'put', key: recordKey(n, 0x78), value: Buffer.from(cbor.encode({ at: Date.now(), topic: entry.topic, client: entry.client, reason: entry.reason, payload })) },
    ];
    if (n > 10_000) ops.push({ type: 'del', key: recordKey(n - 10_000, 0x78) });
    await this.db.batch(ops as any);
  }

  /** Iterate quarantined records ('q') or dead-lettered payloads ('x'). */
  async *listArea(area: 'quarantine' | 'dead-letter', limit = 1000): AsyncGenerator<{ id: number; entry: any }> {
    const prefix = area === 'quarantine' ? this.qPrefix : 0x78;
    for await (const [key, value] of this.db.iterator({ gte: Buffer.from([prefix]), lt: Buffer.from([prefix + 1]), limit })) {
      if (key.length !== KEY_BYTES) continue;
      yield { id: seqOfKey(key), entry: decode(value) };
    }
  }

  /** Raw access for the window checkpoint and for fault-injection tests. */
  get level(): Level<Buffer, Buffer> {
    return this.db;
  }

  /** Oldest unacknowledged record's event time (ms), or undefined with an empty backlog. */
  async oldestUnackedTs(): Promise<number | undefined> {
    for await (const w of this.stored(this.cursor, true)) {
      try {
        const r = decodeWire(w);
        return r.kind === 'raw' ? r.ts : r.end;
      } catch {
        return undefined;
      }
    }
    return undefined;
  }

  private syncStats(): void {
    this.stats.nextSeq = this.nextSeq;
    this.stats.cursor = this.cursor;
  }

  /** Wait until every append made so far is committed (or failed). */
  async drain(): Promise<void> {
    while (this.committing || this.pendingDones.length > 0) {
      if (this.committing) await this.committing;
      else await this.flush();
    }
  }

  /** Wait for queued commits, then close LevelDB. Appends after close() starts are refused. */
  async close(): Promise<void> {
    if (!this.opened) return;
    this.closing = true;
    if (this.syncTimer) clearInterval(this.syncTimer);
    if (this.diskTimer) clearInterval(this.diskTimer);
    this.wakeSpaceWaiters();
    await this.drain();
    if (this.unsyncedWrites && this.config.sync !== 'never') {
      await this.db.put(SYNC_MARK, Buffer.from(String(Date.now())), { sync: true } as any).catch(() => undefined);
    }
    await this.deleting;
    this.opened = false;
    if (this.ownsDb) {
      // A write with sync also makes every write before it durable (LevelDB's log is sequential).
      await this.db.del(OPEN_MARK, { sync: true } as any).catch(() => undefined);
      await this.db.close();
    }
  }
}

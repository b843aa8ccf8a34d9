/**
 * The gateway's wall clock, and what happens to readings stamped while it is wrong.
 *
 * A Raspberry Pi has no real-time clock: it boots at 1970 (or, with fake-hwclock, at the time it
 * last shut down) and runs on that until NTP synchronises it, possibly hours later if the site is
 * offline. Readings whose device sent no `ts` get the gateway's receive time, so during that
 * stretch their timestamps are wrong.
 *
 * What this module guarantees
 * - `stamp()` is synchronous and cheap (two clock reads and a comparison); ingest calls it for every
 *   gateway-assigned timestamp. Device-supplied timestamps are never touched.
 * - A reading stamped while the clock is not known to be synchronised is flagged
 *   FLAG_CLOCK_UNSYNCED (protocols/batch.ts), and its stamp is remembered as an offset
 *   (wall − monotonic at receipt) for a range of sequence numbers. The monotonic clock
 *   (performance.now) is immune to clock steps, so when the clock is later found synchronised at
 *   (wallSync, monoSync), the reading's true receipt time is
 *       wallSync − (monoSync − monoReceipt) = ts + (offsetSync − offsetReceipt).
 * - `restamp(rec)` applies that correction to a record read back from the log, and clears the flag.
 *   It is pure with respect to the stored record (the log keeps the original ts), so a batch resent
 *   after a failure carries the same corrected ts every time. The forwarder calls it just before it
 *   encodes a batch; records already forwarded before the sync keep their wrong ts and their flag.
 * - Memory is one small entry per clock step seen while unsynchronised (capped at `maxSegments`),
 *   not one per reading.
 * - Records stamped by an earlier process (the monotonic clock restarts with each boot, and the
 *   ranges live in memory) are left as they are, flagged.
 * - Once synchronised, the clock is trusted for the life of the process and probing stops.
 *
 * How "synchronised" is decided (`check`)
 *   off    always trust the clock (a Pi with an RTC and no NTP, or a VM)
 *   floor  trust the clock once it reads at least `notBeforeMs` (a date no correct clock can be
 *          before: this release's date by default). Catches the 1970 boot, not fake-hwclock.
 *   auto   ask the kernel through systemd (the file /run/systemd/timesync/synchronized, written by
 *          systemd-timesyncd once synced; else `timedatectl show -p NTPSynchronized`, which reports the
 *          kernel's STA_UNSYNC flag from adjtimex(2) for any NTP daemon, chrony included). When
 *          neither can answer (no systemd, a container), fall back to `floor`. The floor always
 *          applies: a clock before it is never trusted.
 */
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { FLAG_CLOCK_UNSYNCED, type RawRecord } from '../protocols/batch.js';

/** Earliest date a synchronised clock can show: the date of this release. Bump it when releasing. */
export const CLOCK_FLOOR_MS = Date.UTC(2026, 10, 1);

export type ClockCheck = 'auto' | 'floor' | 'off';

export interface ClockConfig {
  /** How to decide the clock is synchronised (see the module comment). */
  check: ClockCheck;
  /** A clock reading before this (ms since the epoch) is never trusted. */
  notBeforeMs: number;
  /** While unsynchronised, ask the kernel this often (ms). */
  probeIntervalMs: number;
  /** Most remembered stamp ranges; older ones are forgotten (their readings stay flagged). */
  maxSegments: number;
}

export const DEFAULT_CLOCK_CONFIG: ClockConfig = { check: 'auto', notBeforeMs: CLOCK_FLOOR_MS, probeIntervalMs: 5000, maxSegments: 10_000 };

/** Wall clock (ms since the epoch, may jump) and monotonic clock (ms, never jumps). Injected in tests. */
export interface TimeSource {
  wall(): number;
  mono(): number;
}

export const systemTime: TimeSource = { wall: () => Date.now(), mono: () => performance.now() };

/** true: synchronised; false: not; undefined: cannot tell (no systemd, no timedatectl). */
export type SyncProbe = () => Promise<boolean | undefined>;

export interface ClockStamp {
  /** The timestamp to store (ms since the epoch, integer). */
  ts: number;
  /** The clock was not known to be synchronised: flag the record, and track() its sequence. */
  unsynced: boolean;
  /** wall − mono when stamped. */
  offset: number;
}

export interface ClockStats {
  synced: boolean;
  /** Readings stamped while unsynchronised, by this process. */
  unsyncedStamps: number;
  /** Records whose ts restamp() corrected (counted once per record, not per resend). */
  restamped: number;
  /** Wall time when the clock was found synchronised (ms), if it ever was unsynchronised. */
  syncedAt?: number;
  /** How far the wall clock moved relative to the monotonic clock at the sync (ms; + = forward). */
  stepMs?: number;
  /** What decided the state: 'kernel', 'floor' or 'off'. */
  source: string;
}

interface Segment {
  from: number;
  to: number;
  offset: number;
}

/** Offsets within this many ms share one segment (slewing moves the offset slowly). */
const SEGMENT_TOLERANCE_MS = 50;

export class GatewayClock {
  readonly config: ClockConfig;
  readonly stats: ClockStats;
  private readonly time: TimeSource;
  private readonly probe: SyncProbe;
  private readonly onSync: (info: { stepMs: number; unsyncedStamps: number; source: string }) => void;
  private synced: boolean;
  /** Last kernel answer; undefined = unknown, so the floor decides. */
  private kernel: boolean | undefined;
  private syncOffset: number | undefined;
  private segments: Segment[] = [];
  private restampedUpTo = 0;
  private timer: NodeJS.Timeout | null = null;
  private probing = false;

  constructor(
    config: Partial<ClockConfig> = {},
    opts: { time?: TimeSource; probe?: SyncProbe; onSync?: (info: { stepMs: number; unsyncedStamps: number; source: string }) => void } = {},
  ) {
    this.config = { ...DEFAULT_CLOCK_CONFIG, ...config };
    this.time = opts.time ?? systemTime;
    this.probe = opts.probe ?? kernelSyncProbe();
    this.onSync = opts.onSync ?? (() => undefined);
    this.synced = this.config.check === 'off';
    this.stats = { synced: this.synced, unsyncedStamps: 0, restamped: 0, source: this.config.check === 'off' ? 'off' : 'floor' };
  }

  /** Ask the kernel once (so the first readings are judged right), then keep asking while unsynchronised. */
  async start(): Promise<void> {
    if (this.synced) return;
    await this.poll();
    if (this.synced || this.config.check !== 'auto' || this.kernel === undefined) return;
    this.timer = setInterval(() => void this.poll(), this.config.probeIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  isSynced(): boolean {
    if (!this.synced) this.evaluate();
    return this.synced;
  }

  /** The timestamp for a reading that carries none. */
  stamp(): ClockStamp {
    const wall = this.time.wall();
    const mono = this.time.mono();
    if (!this.synced) this.evaluate(wall, mono);
    const offset = wall - mono;
    return { ts: Math.round(wall), unsynced: !this.synced, offset };
  }

  /** Remember that `seq` was stamped unsynchronised with `stamp`. Sequences arrive in increasing order. */
  track(seq: number, stamp: ClockStamp): void {
    if (!stamp.unsynced || seq <= 0) return;
    this.stats.unsyncedStamps++;
    const last = this.segments[this.segments.length - 1];
    if (last && seq > last.to && Math.abs(stamp.offset - last.offset) <= SEGMENT_TOLERANCE_MS) {
      last.to = seq;
      return;
    }
    this.segments.push({ from: seq, to: seq, offset: stamp.offset });
    if (this.segments.length > this.config.maxSegments) this.segments.shift();
  }

  /**
   * The record with its gateway-assigned ts corrected, if it was stamped unsynchronised by this
   * process and the clock has since been synchronised; otherwise the record itself.
   */
  restamp<R extends RawRecord>(rec: R): R {
    if (!rec.fl || !(rec.fl & FLAG_CLOCK_UNSYNCED)) return rec;
    if (!this.isSynced() || this.syncOffset === undefined) return rec;
    const seg = this.segmentOf(rec.seq);
    if (!seg) return rec;
    if (rec.seq > this.restampedUpTo) {
      this.stats.restamped++;
      this.restampedUpTo = rec.seq;
    }
    const ts = Math.max(0, Math.round(rec.ts + (this.syncOffset - seg.offset)));
    return { ...rec, ts, fl: rec.fl & ~FLAG_CLOCK_UNSYNCED };
  }

  private segmentOf(seq: number): Segment | undefined {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.segments[mid];
      if (seq < s.from) hi = mid - 1;
      else if (seq > s.to) lo = mid + 1;
      else return s;
    }
    return undefined;
  }

  private async poll(): Promise<void> {
    if (this.probing || this.synced) return;
    this.probing = true;
    try {
      if (this.config.check === 'auto') this.kernel = await this.probe().catch(() => undefined);
      this.evaluate();
      if (this.synced || this.kernel === undefined) this.stop();
    } finally {
      this.probing = false;
    }
  }

  private evaluate(wall = this.time.wall(), mono = this.time.mono()): void {
    if (this.synced) return;
    if (wall < this.config.notBeforeMs) return;
    const source = this.config.check === 'auto' && this.kernel !== undefined ? 'kernel' : 'floor';
    if (source === 'kernel' && !this.kernel) return;
    this.synced = true;
    this.syncOffset = wall - mono;
    this.stats.synced = true;
    this.stats.source = source;
    if (this.stats.unsyncedStamps > 0 || this.segments.length > 0) {
      this.stats.syncedAt = Math.round(wall);
      const last = this.segments[this.segments.length - 1];
      this.stats.stepMs = last ? Math.round(this.syncOffset - last.offset) : 0;
      this.onSync({ stepMs: this.stats.stepMs, unsyncedStamps: this.stats.unsyncedStamps, source });
    }
    this.stop();
  }
}

/**
 * Ask systemd whether the kernel clock is synchronised. Reads /run/systemd/timesync/synchronized
 * (systemd-timesyncd), else runs `timedatectl show -p NTPSynchronized --value`. If timedatectl fails
 * before it ever answered (no systemd as PID 1, no D-Bus), it is not run again: undefined, the floor
 * decides. A failure after it has answered (a timeout under load) counts as "not yet".
 */
export function kernelSyncProbe(opts: { runDir?: string; timedatectl?: string } = {}): SyncProbe {
  const runDir = opts.runDir ?? '/run/systemd/timesync';
  const bin = opts.timedatectl ?? 'timedatectl';
  let timedatectlWorks = true;
  let answered = false;
  return async () => {
    if (await access(join(runDir, 'synchronized')).then(() => true, () => false)) return true;
    if (!timedatectlWorks) return undefined;
    const answer = await new Promise<string | undefined>((resolve) => {
      execFile(bin, ['show', '-p', 'NTPSynchronized', '--value'], { timeout: 2000 }, (err, stdout) => resolve(err ? undefined : stdout.trim()));
    });
    if (answer === 'yes' || answer === 'no') {
      answered = true;
      return answer === 'yes';
    }
    if (answered) return false;
    timedatectlWorks = false;
    return undefined;
  };
}

/**
 * Window stage: feeds committed readings to the event-time window engine (gateway/windows.ts) and
 * appends every closed or revised window to the aggregate lane of the durable log, which its own
 * forwarder sends ahead of any raw backlog.
 *
 * Guarantees
 * - Readings arrive here after their commit, in gateway-sequence order (ingest's onReading).
 * - Readings with a flagged clock (unsynchronised gateway clock, far-future or ancient event time)
 *   are not aggregated: they stay in the raw stream, counted where they were flagged.
 * - Restart neither loses nor double-counts a window: every `checkpointMs` the engine's snapshot is
 *   stored with the sequence it covers, atomically with the raw lane's retain floor, and only after
 *   every aggregate it produced is committed. The raw lane keeps acked records above the floor, so
 *   start() restores the snapshot and replays exactly the readings after it. Replay may append an
 *   aggregate revision that was already appended before the crash: the cloud writes the same point.
 * - Never runs two checkpoints concurrently; tick() and add() are synchronous.
 */
import { Decoder, Encoder } from 'cbor-x';
import { FLAG_ANCIENT_TS, FLAG_CLOCK_UNSYNCED, FLAG_FUTURE_TS, type RawRecord } from '../protocols/batch.js';
import type { DurableLog } from './log.js';
import { WindowEngine, type WindowConfig, type WindowOutput } from './windows.js';

export interface WindowStageConfig {
  /** Window specs, e.g. ['1m', '5m/1m']. Empty: the stage is off. */
  windows: string[];
  allowedLatenessMs: number;
  graceMs: number;
  idleTimeoutMs?: number;
  /** How often window state is checkpointed (ms). */
  checkpointMs: number;
  /** How often idle devices are checked (ms). */
  tickMs: number;
}

export const DEFAULT_WINDOW_STAGE_CONFIG: WindowStageConfig = {
  windows: ['1m'],
  allowedLatenessMs: 10_000,
  graceMs: 60_000,
  checkpointMs: 5_000,
  tickMs: 1_000,
};

const STATE_KEY = Buffer.from('w:state');
const SKIP_FLAGS = FLAG_CLOCK_UNSYNCED | FLAG_FUTURE_TS | FLAG_ANCIENT_TS;
const cbor = new Encoder({ useRecords: false } as ConstructorParameters<typeof Encoder>[0]);
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true } as ConstructorParameters<typeof Decoder>[0]);

export class WindowStage {
  private engine!: WindowEngine;
  private lastSeq = 0;
  private checkpointedSeq = 0;
  private pending = new Set<Promise<void>>();
  private tickTimer: NodeJS.Timeout | null = null;
  private cpTimer: NodeJS.Timeout | null = null;
  private checkpointing: Promise<void> | null = null;
  private readonly engineConfig: WindowConfig;
  emitted = 0;
  appendErrors = 0;
  replayed = 0;

  constructor(
    private readonly raw: DurableLog,
    private readonly agg: DurableLog,
    readonly config: WindowStageConfig,
    private readonly opts: { now?: () => number; onLog?: (level: 'warn' | 'error' | 'info', msg: string, extra?: object) => void } = {},
  ) {
    this.engineConfig = {
      windows: config.windows,
      allowedLatenessMs: config.allowedLatenessMs,
      graceMs: config.graceMs,
      idleTimeoutMs: config.idleTimeoutMs,
      now: opts.now,
    };
  }

  /** Restore the checkpoint and replay the raw readings after it. Call after both logs are open. */
  async start(): Promise<void> {
    const stored = await this.raw.level.get(STATE_KEY);
    let from = 0;
    if (stored) {
      try {
        const state = decoder.decode(stored) as { seq: number; snap: unknown };
        this.engine = WindowEngine.restore(this.engineConfig, state.snap);
        from = state.seq;
      } catch (err) {
        // A checkpoint we cannot read must not crash-loop the gateway: start empty, say so.
        this.opts.onLog?.('error', 'window checkpoint unreadable: starting with empty windows', { err: (err as Error).message });
        this.engine = new WindowEngine(this.engineConfig);
      }
    } else {
      this.engine = new WindowEngine(this.engineConfig);
    }
    this.lastSeq = from;
    this.checkpointedSeq = from;
    for await (const rec of this.raw.scan(from)) {
      if (rec.kind === 'raw') {
        this.onReading(rec);
        this.replayed++;
      }
    }
    if (this.replayed > 0) this.opts.onLog?.('info', 'window state rebuilt', { from, replayed: this.replayed });
    this.tickTimer = setInterval(() => this.emit(this.engine.tick()), this.config.tickMs);
    this.tickTimer.unref();
    this.cpTimer = setInterval(() => void this.checkpoint(), this.config.checkpointMs);
    this.cpTimer.unref();
  }

  /** One committed reading, in sequence order. */
  onReading(rec: RawRecord): void {
    if (rec.seq <= this.lastSeq) return; // already in the restored state
    this.lastSeq = rec.seq;
    if (rec.fl !== undefined && rec.fl & SKIP_FLAGS) return;
    this.emit(this.engine.add(rec.dev, rec.ts, rec.vals));
  }

  private emit(outs: readonly WindowOutput[]): void {
    // Indexed: called per reading, almost always with nothing, and a for-of iterator was an
    // allocation each time.
    for (let i = 0; i < outs.length; i++) {
      const o = outs[i];
      const { committed } = this.agg.append({ kind: 'agg', ...o });
      this.emitted++;
      const p = committed.catch((err) => {
        this.appendErrors++;
        this.opts.onLog?.('error', 'could not store a window aggregate', { dev: o.dev, win: o.win, start: o.start, err: (err as Error).message });
      });
      this.pending.add(p);
      void p.finally(() => this.pending.delete(p));
    }
  }

  /** Snapshot now; store it once every aggregate emitted so far is committed. */
  checkpoint(): Promise<void> {
    if (this.checkpointing) return this.checkpointing;
    if (!this.engine || (!this.engine.dirty && this.lastSeq === this.checkpointedSeq)) return Promise.resolve();
    const seq = this.lastSeq;
    const value = Buffer.from(cbor.encode({ v: 1, seq, snap: this.engine.snapshot() }));
    const waitFor = [...this.pending];
    this.checkpointing = (async () => {
      try {
        await Promise.all(waitFor);
        await this.raw.checkpoint([{ type: 'put', key: STATE_KEY, value }], seq);
        this.checkpointedSeq = seq;
      } catch (err) {
        this.opts.onLog?.('warn', 'window checkpoint failed; will retry', { err: (err as Error).message });
      } finally {
        this.checkpointing = null;
      }
    })();
    return this.checkpointing;
  }

  stats() {
    return { ...(this.engine ? this.engine.stats() : {}), emitted: this.emitted, appendErrors: this.appendErrors, replayed: this.replayed, checkpointedSeq: this.checkpointedSeq };
  }

  /** Stop timers and write a final checkpoint (before the logs close). */
  async stop(): Promise<void> {
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.cpTimer) clearInterval(this.cpTimer);
    await this.checkpointing;
    await this.checkpoint();
  }
}

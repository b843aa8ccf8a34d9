/**
 * Durable alert state and notification outbox, in sublevels of the cloud's LevelDB (hwm-store.ts),
 * so they commit atomically with the high-water mark of the batch that produced them.
 *
 * On-disk layout (`<data>/hwm`, next to the marks `hw!<gw>!<inc>`):
 *   !alert!<rule>!<device>   → KeyState (alert-engine.ts) as JSON
 *   !outbox!<seq, 16 digits> → OutboxEntry as JSON; seq orders delivery
 * Rule ids and device ids match [A-Za-z0-9_.-], so keys split unambiguously.
 *
 * This module only builds operations and reads; it never decides what to commit or when.
 */
import type { Evaluation, KeyState, Transition } from './alert-engine.js';
import type { HwmStore, StoreSublevel, SublevelOp } from './hwm-store.js';

/** The target name of the InfluxDB history writer (not a valid notifier name, so never a clash). */
export const HISTORY_TARGET = '@history';

export interface OutboxEntry {
  seq: number;
  /** A notifier name, or HISTORY_TARGET. */
  target: string;
  /** Wall-clock ms when it was committed (entries older than the outbox's max age are dropped). */
  createdAt: number;
  transition: Transition;
}

export class AlertStore {
  private states: StoreSublevel<KeyState> | undefined;
  private outbox: StoreSublevel<OutboxEntry> | undefined;
  private nextSeq = 1;

  constructor(private readonly hwm: HwmStore) {}

  /** Create the sublevels (the HwmStore must be open) and find the next outbox sequence. */
  async open(): Promise<void> {
    this.states = this.hwm.sublevel<KeyState>('alert');
    this.outbox = this.hwm.sublevel<OutboxEntry>('outbox');
    for await (const k of this.outbox.keys({ reverse: true, limit: 1 })) this.nextSeq = Number(k) + 1;
  }

  private s(): StoreSublevel<KeyState> {
    if (!this.states) throw new Error('AlertStore is not open');
    return this.states;
  }

  private o(): StoreSublevel<OutboxEntry> {
    if (!this.outbox) throw new Error('AlertStore is not open');
    return this.outbox;
  }

  async loadStates(): Promise<KeyState[]> {
    const out: KeyState[] = [];
    for await (const v of this.s().values()) out.push(v);
    return out;
  }

  async loadOutbox(): Promise<OutboxEntry[]> {
    const out: OutboxEntry[] = [];
    for await (const v of this.o().values()) out.push(v);
    return out;
  }

  /** Outbox entries for transitions (sequence numbers are taken now; a failed commit leaves a gap). */
  entries(transitions: Transition[], targets: (t: Transition) => string[], now: number): OutboxEntry[] {
    const out: OutboxEntry[] = [];
    for (const t of transitions) for (const target of targets(t)) out.push({ seq: this.nextSeq++, target, createdAt: now, transition: t });
    return out;
  }

  /** The writes that persist an evaluation and its outbox entries. */
  ops(ev: Pick<Evaluation, 'changed' | 'removed'>, entries: OutboxEntry[] = []): SublevelOp[] {
    const ops: SublevelOp[] = [];
    for (const k of ev.removed) ops.push({ type: 'del', sublevel: this.s(), key: k });
    for (const [k, v] of ev.changed) ops.push({ type: 'put', sublevel: this.s(), key: k, value: v });
    for (const e of entries) ops.push({ type: 'put', sublevel: this.o(), key: seqKey(e.seq), value: e });
    return ops;
  }

  removeOps(seqs: number[]): SublevelOp[] {
    return seqs.map((seq) => ({ type: 'del', sublevel: this.o(), key: seqKey(seq) }));
  }

  /** Commit alert-only writes (wall-clock firings, reloads, delivered entries). */
  write(ops: SublevelOp[]): Promise<void> {
    return this.hwm.batch(ops);
  }
}

function seqKey(seq: number): string {
  return String(seq).padStart(16, '0');
}

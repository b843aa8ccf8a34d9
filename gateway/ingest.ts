/**
 * Ingest stage: one MQTT PUBLISH on a telemetry topic → decoded, validated reading → durable log.
 *
 * Guarantees
 * - The returned promise settles only after the reading's group commit: the broker hook awaits it
 *   before letting aedes send the PUBACK (ARCHITECTURE.md guarantee 1).
 * - Sequence numbers are assigned synchronously in call order, so readings of one device keep the
 *   order in which the broker handed them over.
 * - A malformed payload is refused with a reason (SLUICE_BAD_PAYLOAD / SLUICE_BAD_TOPIC /
 *   SLUICE_TOO_LARGE / SLUICE_UNSUPPORTED_VERSION), counted under dropped{reason}, kept in the
 *   dead-letter area, and touches nothing else.
 */
import { FLAG_CLOCK_UNSYNCED, FLAG_GATEWAY_TS, type RawRecord, FLAG_FUTURE_TS, FLAG_ANCIENT_TS } from '../protocols/batch.js';
import { isSluiceError } from '../protocols/errors.js';
import { decodePayload, DEFAULT_PAYLOAD_LIMITS, type PayloadLimits } from '../protocols/payload.js';
import { parseTelemetryTopic, type TelemetryTopic, isTelemetryTopic } from '../protocols/topic.js';
import type { ClockStamp } from './clock.js';
import { settle, type CommitCallback, type DurableLog } from './log.js';
import type { LogEntry } from './log-codec.js';

export interface IngestStats {
  received: number;
  committed: number;
  dropped: Record<string, number>;
  errors: number;
  /** Readings kept but flagged, by reason (future_ts, ancient_ts). */
  flagged: Record<string, number>;
}

export type IngestRejected = { ok: false; reason: string; code: string; message: string };
export type IngestResult = { ok: true; seq: number; committed: Promise<void> } | IngestRejected;
/**
 * What submit() returns: accepted (its `done` will be called) or refused. One shared object for
 * every acceptance (no allocation per reading); the reading's sequence is then `lastSeq`.
 */
export type IngestSubmit = { readonly ok: true } | IngestRejected;

const TOPIC_CACHE_SIZE = 10_000;
const ACCEPTED: IngestSubmit = Object.freeze({ ok: true });

export interface IngestOptions {
  limits?: PayloadLimits;
  /** Event time further ahead of the gateway clock than this is flagged (ms, default 5 min). */
  futureToleranceMs?: number;
  /** Event time older than this is flagged (ms, default 365 days). */
  maxAgeMs?: number;
  /** Gateway clock (ms). Injected for tests. */
  now?: () => number;
  /**
   * Stamps readings that carry no `ts` and remembers those stamped before the clock was
   * synchronised (gateway/clock.ts); takes precedence over `now`.
   */
  clock?: { stamp(): ClockStamp; track(seq: number, stamp: ClockStamp): void; isSynced(): boolean };
  /** Called for every accepted reading after it is committed (windows, local taps). */
  onReading?: (rec: RawRecord) => void;
  /** Rate-limited warning sink. */
  onReject?: (info: { topic: string; client: string; code: string; message: string }) => void;
}

export class Ingest {
  readonly stats: IngestStats = { received: 0, committed: 0, dropped: {}, errors: 0, flagged: {} };
  private readonly futureMs: number;
  private readonly maxAgeMs: number;
  private readonly limits: PayloadLimits;
  private readonly now: () => number;
  private readonly recent = new RecentReadings(64);
  private readonly topics = new Map<string, TelemetryTopic | null>();

  /**
   * Readings appended to the log and not yet settled, in sequence order, from `settledUpTo` on (the
   * settled head is cut off now and then, not per group: splice() builds an array of what it removes).
   */
  private readonly uncommitted: Array<LogEntry & RawRecord> = [];
  private settledUpTo = 0;
  /** Sequence of the reading submit() accepted last (0: it was a retransmission, stored before). */
  lastSeq = 0;
  /**
   * Tells the callbacks passed to submit() how their readings' commit went, a group at a time (the
   * broker replaces it to do its backpressure bookkeeping once per group). Default: each callback.
   */
  onSettled: (dones: CommitCallback[], err: Error | null) => void = settle;

  constructor(private readonly log: DurableLog, private readonly opts: IngestOptions = {}) {
    log.onCommitted = (first, last, dones, err) => this.committedGroup(first, last, dones, err);
    this.limits = opts.limits ?? DEFAULT_PAYLOAD_LIMITS;
    this.now = opts.now ?? Date.now;
    this.futureMs = opts.futureToleranceMs ?? 5 * 60_000;
    this.maxAgeMs = opts.maxAgeMs ?? 365 * 86_400_000;
  }

  /**
   * Handle one publish. Returns null for topics outside the telemetry namespace (brokered as is).
   * Otherwise the reading is appended; `committed` resolves when it is durable.
   */
  accept(topic: string, payload: Uint8Array, clientId: string, contentType?: string): IngestResult | null {
    let done!: (err: Error | null) => void;
    const committed = new Promise<void>((resolve, reject) => {
      done = (err) => (err ? reject(err) : resolve());
    });
    const r = this.submit(topic, payload, clientId, contentType, done);
    if (r === null || !r.ok) return r;
    return { ok: true, seq: this.lastSeq, committed };
  }

  /**
   * accept() for the broker's hot path: no promise per reading. When the result is `{ ok: true }`,
   * `done` is called exactly once, after the commit (null) or with the commit error; otherwise never.
   */
  submit(topic: string, payload: Uint8Array, clientId: string, contentType: string | undefined, done: (err: Error | null) => void): IngestSubmit | null {
    let parsed = this.topics.get(topic);
    if (parsed === undefined) {
      try {
        parsed = parseTelemetryTopic(topic);
      } catch (err) {
        return this.reject(topic, payload, clientId, err);
      }
      // Devices publish on the same few topics: remember the parse (bounded; only valid topics).
      if (this.topics.size >= TOPIC_CACHE_SIZE) this.topics.clear();
      this.topics.set(topic, parsed);
    }
    if (parsed === null) return null;
    this.stats.received++;
    let decoded;
    try {
      decoded = decodePayload(payload, { contentType, metric: parsed.metric, limits: this.limits });
    } catch (err) {
      return this.reject(topic, payload, clientId, err);
    }
    if (decoded.seq !== undefined && decoded.ts !== undefined && this.recent.has(parsed.deviceId, decoded.seq, decoded.ts)) {
      // An MQTT QoS 1 retransmission of a reading already committed (its PUBACK was lost, e.g. the
      // connection dropped): acknowledge it again, store it once.
      this.stats.dropped.duplicate = (this.stats.dropped.duplicate ?? 0) + 1;
      process.nextTick(() => this.onSettled([done], null));
      this.lastSeq = 0;
      return ACCEPTED;
    }
    const stamp = decoded.ts === undefined ? this.opts.clock?.stamp() : undefined;
    // One object from decode to the windows: the log entry, then (with its seq) the committed record.
    // Every field in the literal (V8 gives a literal exactly its own slots; a field added later
    // would cost a property array per reading, kept until the commit).
    const rec: LogEntry & RawRecord = { kind: 'raw', seq: 0, dev: parsed.deviceId, ts: decoded.ts ?? stamp?.ts ?? this.now(), vals: decoded.values, fl: undefined, tags: undefined, dseq: undefined };
    if (decoded.ts === undefined) rec.fl = stamp?.unsynced ? FLAG_GATEWAY_TS | FLAG_CLOCK_UNSYNCED : FLAG_GATEWAY_TS;
    else if (!this.opts.clock || this.opts.clock.isSynced()) {
      // Clock sanity (only judged once our own clock can be trusted): a device clock far ahead of the gateway's, or absurdly old, is flagged and
      // counted (kept in the raw stream; windows ignore it so it cannot push watermarks around).
      const now = this.now();
      if (decoded.ts > now + this.futureMs) {
        rec.fl = FLAG_FUTURE_TS;
        this.stats.flagged.future_ts = (this.stats.flagged.future_ts ?? 0) + 1;
      } else if (decoded.ts < now - this.maxAgeMs) {
        rec.fl = FLAG_ANCIENT_TS;
        this.stats.flagged.ancient_ts = (this.stats.flagged.ancient_ts ?? 0) + 1;
      }
    }
    if (decoded.tags) rec.tags = decoded.tags;
    if (decoded.seq !== undefined) rec.dseq = decoded.seq;
    const seq = this.log.appendWith(rec, done);
    rec.seq = seq;
    if (seq > 0) this.uncommitted.push(rec);
    if (stamp?.unsynced) this.opts.clock!.track(seq, stamp);
    this.lastSeq = seq;
    return ACCEPTED;
  }

  /**
   * A group commit of the log settled (DurableLog.onCommitted): its readings go to the windows and
   * the retransmission memory, then their callbacks are told. Ingest is the raw lane's only
   * appender, so `uncommitted` holds exactly the readings appended and not yet settled, in order.
   */
  private committedGroup(_first: number, last: number, dones: CommitCallback[], err: Error | null): void {
    const recs = this.uncommitted;
    const from = this.settledUpTo;
    let k = from;
    while (k < recs.length && recs[k].seq <= last) k++;
    if (err) {
      this.stats.errors += dones.length;
    } else {
      this.stats.committed += k - from;
      for (let i = from; i < k; i++) {
        const rec = recs[i];
        // Remembered only once durable: a retransmission of a reading whose commit failed is stored.
        if (rec.dseq !== undefined && !(rec.fl! & FLAG_GATEWAY_TS)) this.recent.remember(rec.dev, rec.dseq, rec.ts);
        this.opts.onReading?.(rec);
      }
    }
    for (let i = from; i < k; i++) recs[i] = undefined as never; // no longer kept alive
    if (k === recs.length) {
      recs.length = 0;
      this.settledUpTo = 0;
    } else if (k >= 4096) {
      recs.splice(0, k);
      this.settledUpTo = 0;
    } else this.settledUpTo = k;
    this.onSettled(dones, err);
  }

  /** Count a telemetry publish shed by the backpressure policy. False for non-telemetry topics. */
  shed(topic: string): boolean {
    if (!isTelemetryTopic(topic)) return false;
    this.stats.received++;
    this.stats.dropped.shed_qos0 = (this.stats.dropped.shed_qos0 ?? 0) + 1;
    return true;
  }

  logFull(): boolean {
    return this.log.stats.full;
  }

  private reject(topic: string, payload: Uint8Array, client: string, err: unknown): IngestRejected {
    const code = isSluiceError(err) ? err.code : 'SLUICE_BAD_PAYLOAD';
    const message = (err as Error).message;
    const reason = code.replace(/^SLUICE_/, '').toLowerCase();
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + 1;
    this.opts.onReject?.({ topic, client, code, message });
    void this.log.deadLetter({ topic, client, reason: `${code}: ${message}`, payload }).catch(() => undefined);
    return { ok: false, reason, code, message };
  }
}

/**
 * The last `size` (device seq, event time) pairs per device, to recognise a retransmitted reading.
 * Fixed memory per device; only readings that carry both `seq` and `ts` can be recognised.
 */
export class RecentReadings {
  private readonly byDevice = new Map<string, { seqs: Float64Array; ts: Float64Array; next: number }>();

  constructor(private readonly size: number) {}

  has(device: string, seq: number, ts: number): boolean {
    const r = this.byDevice.get(device);
    if (!r) return false;
    for (let i = 0; i < this.size; i++) if (r.seqs[i] === seq && r.ts[i] === ts) return true;
    return false;
  }

  remember(device: string, seq: number, ts: number): void {
    let r = this.byDevice.get(device);
    if (!r) {
      r = { seqs: new Float64Array(this.size).fill(-1), ts: new Float64Array(this.size), next: 0 };
      this.byDevice.set(device, r);
    }
    r.seqs[r.next] = seq;
    r.ts[r.next] = ts;
    r.next = (r.next + 1) % this.size;
  }
}

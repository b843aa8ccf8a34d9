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
import { FLAG_GATEWAY_TS, type RawRecord } from '../protocols/batch.js';
import { isSluiceError } from '../protocols/errors.js';
import { decodePayload, DEFAULT_PAYLOAD_LIMITS, type PayloadLimits } from '../protocols/payload.js';
import { parseTelemetryTopic } from '../protocols/topic.js';
import type { DurableLog } from './log.js';

export interface IngestStats {
  received: number;
  committed: number;
  dropped: Record<string, number>;
  errors: number;
}

export type IngestResult =
  | { ok: true; seq: number; committed: Promise<void> }
  | { ok: false; reason: string; code: string; message: string };

export interface IngestOptions {
  limits?: PayloadLimits;
  /** Gateway clock (ms). Injected for tests. */
  now?: () => number;
  /** Called for every accepted reading after it is committed (windows, local taps). */
  onReading?: (rec: RawRecord) => void;
  /** Rate-limited warning sink. */
  onReject?: (info: { topic: string; client: string; code: string; message: string }) => void;
}

export class Ingest {
  readonly stats: IngestStats = { received: 0, committed: 0, dropped: {}, errors: 0 };
  private readonly limits: PayloadLimits;
  private readonly now: () => number;

  constructor(private readonly log: DurableLog, private readonly opts: IngestOptions = {}) {
    this.limits = opts.limits ?? DEFAULT_PAYLOAD_LIMITS;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Handle one publish. Returns null for topics outside the telemetry namespace (brokered as is).
   * Otherwise the reading is appended; `committed` resolves when it is durable.
   */
  accept(topic: string, payload: Uint8Array, clientId: string, contentType?: string): IngestResult | null {
    let parsed;
    try {
      parsed = parseTelemetryTopic(topic);
    } catch (err) {
      return this.reject(topic, payload, clientId, err);
    }
    if (parsed === null) return null;
    this.stats.received++;
    let decoded;
    try {
      decoded = decodePayload(payload, { contentType, metric: parsed.metric, limits: this.limits });
    } catch (err) {
      return this.reject(topic, payload, clientId, err);
    }
    const rec: Omit<RawRecord, 'seq'> = { dev: parsed.deviceId, ts: decoded.ts ?? this.now(), vals: decoded.values };
    if (decoded.ts === undefined) rec.fl = FLAG_GATEWAY_TS;
    if (decoded.tags) rec.tags = decoded.tags;
    if (decoded.seq !== undefined) rec.dseq = decoded.seq;
    const { seq, committed } = this.log.append({ kind: 'raw', ...rec });
    const done = committed.then(
      () => {
        this.stats.committed++;
        this.opts.onReading?.({ seq, ...rec });
      },
      (err) => {
        this.stats.errors++;
        throw err;
      },
    );
    return { ok: true, seq, committed: done };
  }

  private reject(topic: string, payload: Uint8Array, client: string, err: unknown): IngestResult {
    const code = isSluiceError(err) ? err.code : 'SLUICE_BAD_PAYLOAD';
    const message = (err as Error).message;
    const reason = code.replace(/^SLUICE_/, '').toLowerCase();
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + 1;
    this.opts.onReject?.({ topic, client, code, message });
    void this.log.deadLetter({ topic, client, reason: `${code}: ${message}`, payload }).catch(() => undefined);
    return { ok: false, reason, code, message };
  }
}

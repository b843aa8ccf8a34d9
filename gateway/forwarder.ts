/**
 * Forwarder: reads the durable log in sequence order and POSTs CBOR batches (protocols/batch.ts)
 * to the cloud. The log cursor advances only on the cloud's ack; nothing is deleted before that.
 *
 * Guarantees
 * - Batches go out in order and are acknowledged in order: normally one at a time; while catching up
 *   on a backlog up to `maxInFlight` consecutive batches are on the wire, and the cloud commits them
 *   in sequence. (A batch always starts right after the previous one; records evicted or
 *   quarantined locally fall inside its [first, last] range.)
 * - Response classes (telegraf-style): 200 ack → advance; 409 gap → resend from the cloud's expected
 *   sequence; 413 → halve the batch and resend; 400 → bisect to the bad records, quarantine them and
 *   send the rest; 401/403 → retry slowly (configuration error, loudly logged); 429/5xx/network →
 *   exponential backoff with jitter, honouring Retry-After.
 * - Circuit breaker: after `breakerThreshold` consecutive failures the circuit opens and only one
 *   probe is sent per `breakerCooldownMs`, so a dead cloud is not hammered.
 * - stop() waits for the batches in flight (bounded by the grace period), then aborts them.
 */
import { encodeBatchEnvelope, envelopeBytes, type RawRecord } from '../protocols/batch.js';
import type { DurableLog } from './log.js';
import { BatchBodyBuilder, encodeBatchBody, type WireRecord } from './log-codec.js';
import { nodeFetch } from './tls-fetch.js';

export interface ForwarderConfig {
  /** Cloud base URL, e.g. http://127.0.0.1:8080 */
  cloudUrl: string;
  /** Bearer token of this gateway at the cloud. */
  token: string;
  gatewayId: string;
  /** Most records in one batch. */
  maxBatchRecords: number;
  /** Most bytes read from the log for one batch. */
  maxBatchBytes: number;
  /** Per-request timeout in ms. */
  requestTimeoutMs: number;
  /** First retry delay in ms; doubles per consecutive failure up to maxBackoffMs. */
  minBackoffMs: number;
  maxBackoffMs: number;
  /** Consecutive failures that open the circuit. */
  breakerThreshold: number;
  /** While open, one probe per this many ms. */
  breakerCooldownMs: number;
  /** When the backlog is small, wait this long for a batch to fill (ms): latency against requests per second. */
  lingerMs: number;
  /** Batches in flight at once while catching up on a backlog (1 = strictly one at a time). */
  maxInFlight: number;
  /** fetch to use instead of the global one, e.g. one that trusts a private CA (tls-fetch.ts). */
  fetchImpl?: typeof fetch;
}

export const DEFAULT_FORWARDER_CONFIG: Omit<ForwarderConfig, 'cloudUrl' | 'token' | 'gatewayId'> = {
  maxBatchRecords: 5000,
  maxBatchBytes: 4 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  minBackoffMs: 250,
  maxBackoffMs: 30_000,
  breakerThreshold: 5,
  breakerCooldownMs: 30_000,
  lingerMs: 100,
  maxInFlight: 3,
};

export interface ForwarderStats {
  batchesSent: number;
  batchesAcked: number;
  recordsForwarded: number;
  retries: number;
  gaps: number;
  splits: number;
  rejectedRecords: number;
  errors: Record<string, number>;
  consecutiveFailures: number;
  circuit: 'closed' | 'open';
  lastError?: string;
  lastAckAt?: number;
}

type SendOutcome =
  | { kind: 'ack'; acked: number }
  | { kind: 'gap'; expected: number }
  | { kind: 'too-large' }
  | { kind: 'bad'; message: string }
  | { kind: 'retry'; reason: string; retryAfterMs?: number };

export class Forwarder {
  readonly config: ForwarderConfig;
  readonly stats: ForwarderStats = {
    batchesSent: 0,
    batchesAcked: 0,
    recordsForwarded: 0,
    retries: 0,
    gaps: 0,
    splits: 0,
    rejectedRecords: 0,
    errors: {},
    consecutiveFailures: 0,
    circuit: 'closed',
  };
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  /** Aborts requests in flight (after the stop grace). */
  private abort = new AbortController();
  /** Cuts backoff sleeps short when stopping. */
  private stopping = new AbortController();
  private unsubscribe: (() => void) | null = null;
  private batchLimit: number;
  private readonly random: () => number;
  /** Correction of records stamped while the gateway clock was unsynchronised (gateway/clock.ts). */
  private readonly restamp?: (rec: RawRecord) => RawRecord;
  private readonly fetch: typeof fetch;
  /** Where batches are built from the log (reused: its buffer grows to the largest batch). */
  private readonly body: BatchBodyBuilder;
  /** Envelope buffers of acknowledged batches, for the next ones (pooledEnvelope). */
  private readonly spare: Buffer[] = [];
  private readonly onLog: (level: 'warn' | 'error' | 'info', msg: string, extra?: object) => void;

  constructor(
    private readonly log: DurableLog,
    config: Partial<ForwarderConfig> & Pick<ForwarderConfig, 'cloudUrl' | 'token' | 'gatewayId'>,
    opts: {
      random?: () => number;
      onLog?: (level: 'warn' | 'error' | 'info', msg: string, extra?: object) => void;
      /** Correct a record before it is sent (gateway clock re-stamping, gateway/clock.ts). */
      restamp?: (rec: RawRecord) => RawRecord;
    } = {},
  ) {
    this.config = { ...DEFAULT_FORWARDER_CONFIG, ...config };
    this.batchLimit = this.config.maxBatchRecords;
    this.random = opts.random ?? Math.random;
    this.onLog = opts.onLog ?? (() => undefined);
    this.restamp = opts.restamp;
    this.fetch = this.config.fetchImpl ?? nodeFetch();
    this.body = new BatchBodyBuilder(opts.restamp);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    this.stopping = new AbortController();
    this.unsubscribe = this.log.onCommit(() => this.poke());
    this.loop = this.run();
  }

  /**
   * Stop: no new batch starts; a batch in flight gets `graceMs` to be acked (so a clean shutdown
   * does not leave a replay behind), then its request is aborted.
   */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unsubscribe?.();
    this.poke();
    this.stopping.abort();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.loop, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.abort.abort();
    await this.loop;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** Wait `ms`, or less if stop() is called or `filled()` holds after a commit. */
  private linger(ms: number, filled: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.stopping.signal;
      if (signal.aborted || filled()) return resolve();
      const check = () => {
        if (filled()) finish();
        else this.wake = check;
      };
      const finish = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', finish);
        if (this.wake === check) this.wake = null;
        resolve();
      };
      const t = setTimeout(finish, ms);
      signal.addEventListener('abort', finish, { once: true });
      this.wake = check;
    });
  }

  /** Sleep that only stop() interrupts (backoff must not be cut short by new data). */
  private backoffSleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.stopping.signal;
      if (signal.aborted) return resolve();
      const onAbort = () => {
        clearTimeout(t);
        resolve();
      };
      // The listener is removed when the timer fires: a long outage must not pile them up.
      const t = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async run(): Promise<void> {
    let sentUpTo = this.log.ackedSeq;
    // The last batch was a full one (catching up on a backlog): what is left goes out at once.
    let full = false;
    while (this.running) {
      try {
        if (this.log.lastSeq <= sentUpTo) {
          full = false;
          await this.sleep(60_000);
          continue;
        }
        // Small backlog: linger so a batch carries more than one reading. Only a full batch (or
        // stop()) cuts this short: at a steady trickle that bounds the requests per second.
        // Not at the end of a catch-up: the rest of the backlog is there already, and a linger
        // would idle the whole pipeline for it.
        if (this.log.lastSeq - sentUpTo < this.batchLimit && !full) {
          // Caught up: the catch-up's envelope buffers are not needed for small batches.
          this.spare.length = 0;
          const from = sentUpTo;
          if (this.config.lingerMs > 0) await this.linger(this.config.lingerMs, () => this.log.lastSeq - from >= this.batchLimit);
        }
        if (!this.running) break;
        // A backlog of more than one batch and a healthy cloud: several batches in flight.
        if (this.config.maxInFlight > 1 && this.log.lastSeq - sentUpTo > this.batchLimit && this.stats.consecutiveFailures === 0) {
          sentUpTo = await this.pipeline(sentUpTo);
          full = true;
          continue;
        }
        const { upTo } = await this.log.readBatch(sentUpTo, this.batchLimit, this.config.maxBatchBytes, this.body);
        if (upTo <= sentUpTo) continue;
        const count = this.body.count;
        full = upTo - sentUpTo >= this.batchLimit;
        const { bytes, backing } = this.pooledEnvelope(sentUpTo + 1, upTo, this.body.finish());
        const outcome = await this.send(bytes);
        if (outcome.kind === 'ack') this.release(backing);
        sentUpTo = await this.settle(sentUpTo, upTo, count, outcome);
      } catch (err) {
        if (!this.running) break;
        this.count('internal');
        this.onLog('error', 'forwarder error', { err: (err as Error).message });
        await this.backoffSleep(this.config.minBackoffMs);
      }
    }
  }

  /**
   * Catch-up mode: up to `maxInFlight` batches on the wire, acknowledged strictly in order (the
   * cloud's sequencer applies them in order even if they arrive out of order). Reading and encoding
   * batch N+1 overlaps with the cloud writing batch N to InfluxDB. Any answer other than a plain ack
   * of the head batch ends the pipeline: the other batches are left to finish and forgotten (what
   * they wrote is idempotent), and the sequential path takes over from the head batch, with all its
   * handling of 409/413/400/retries. Returns the new acked position.
   */
  private async pipeline(sentUpTo: number): Promise<number> {
    // Batches are read from the log straight into their encoded form (log.readBatch): no object
    // per record lives while a batch is on the wire (at 100k+ records/s, V8 pretenured such
    // objects and collected the old generation back to back). The slow path (anything but an ack)
    // reads the records again from the log, where they still are.
    type Ready = { last: number; count: number; bytes: Buffer; backing: Buffer };
    const flights: Array<{ last: number; count: number; outcome: Promise<SendOutcome>; backing: Buffer }> = [];
    let readUpTo = sentUpTo;
    /** The next full batch, read and encoded (one at a time: they share this.body). */
    const readNext = async (): Promise<Ready | undefined> => {
      if (!this.running || this.log.lastSeq - readUpTo < this.batchLimit) return undefined;
      const { upTo } = await this.log.readBatch(readUpTo, this.batchLimit, this.config.maxBatchBytes, this.body);
      if (upTo <= readUpTo) return undefined;
      const { bytes, backing } = this.pooledEnvelope(readUpTo + 1, upTo, this.body.finish());
      readUpTo = upTo;
      return { last: upTo, count: this.body.count, bytes, backing };
    };
    // While the pipeline is full the next batch is read ahead, so that it goes out the moment the
    // head is answered: the cloud and InfluxDB are not left waiting for the gateway to read the log.
    let ahead: Promise<Ready | undefined> | undefined;
    // The log records an ack while the next batch is already on its way.
    let acking: Promise<void> | undefined;
    const settled = async (): Promise<void> => {
      await acking;
      await ahead;
    };
    try {
      for (;;) {
        while (flights.length < this.config.maxInFlight) {
          const next = ahead ? await ahead : await readNext();
          ahead = undefined;
          if (!next) break;
          flights.push({ last: next.last, count: next.count, outcome: this.send(next.bytes, sentUpTo), backing: next.backing });
        }
        if (acking) {
          await acking;
          acking = undefined;
        }
        if (!ahead && flights.length > 0) {
          ahead = readNext();
          // Awaited (and its failure seen) before this returns; not an unhandled rejection meanwhile.
          ahead.catch(() => undefined);
        }
        const head = flights.shift();
        if (!head) return sentUpTo;
        const outcome = await head.outcome;
        if (outcome.kind === 'ack') this.release(head.backing);
        if (outcome.kind === 'ack' && outcome.acked >= head.last) {
          acking = this.acked(head.count, head.last);
          acking.catch(() => undefined);
          sentUpTo = head.last;
          if (!this.running) {
            await Promise.allSettled(flights.map((f) => f.outcome));
            await settled();
            this.log.rewind(sentUpTo);
            return sentUpTo;
          }
          continue;
        }
        await Promise.allSettled(flights.map((f) => f.outcome));
        await settled();
        return this.settle(sentUpTo, head.last, head.count, outcome);
      }
    } finally {
      // On an error too: nothing of this pipeline may still use the log or this.body afterwards.
      await Promise.allSettled([acking, ahead]);
    }
  }

  /**
   * The outcome of the batch (sentUpTo, last] of `count` records, sent from its encoded form. An ack
   * of all of it advances the log; anything else rewinds, reads its records back from the log and
   * lets deliver() handle the outcome (409, 413, 400, retries). Returns the new acked position.
   */
  private async settle(sentUpTo: number, last: number, count: number, outcome: SendOutcome): Promise<number> {
    if (outcome.kind === 'ack' && outcome.acked >= last) {
      await this.acked(count, last);
      return last;
    }
    this.log.rewind(sentUpTo);
    const { records } = await this.log.readWire(sentUpTo, count, Number.POSITIVE_INFINITY);
    return this.deliver(sentUpTo + 1, last, records.filter((r) => r.seq <= last), outcome);
  }

  private countAck(records: number): void {
    this.succeeded();
    this.stats.batchesAcked++;
    this.stats.recordsForwarded += records;
    this.stats.lastAckAt = Date.now();
  }

  /** A batch acked in full: count it, advance the log, let the batch size grow back after a split. */
  private async acked(records: number, last: number): Promise<void> {
    this.countAck(records);
    await this.log.ack(last);
    if (this.batchLimit < this.config.maxBatchRecords) this.batchLimit = Math.min(this.config.maxBatchRecords, this.batchLimit * 2);
  }

  /**
   * Deliver records covering [first, last] until acked. Returns the new "sent and acked up to"
   * sequence (normally `last`; earlier after a 409 asked us to resend).
   */
  private async deliver(first: number, last: number, records: WireRecord[], received?: SendOutcome): Promise<number> {
    const batch = this.envelope(first, last, encodeBatchBody(records, this.restamp));
    let pending = received;
    for (;;) {
      if (!this.running) return first - 1;
      const outcome = pending ?? (await this.send(batch));
      pending = undefined;
      switch (outcome.kind) {
        case 'ack': {
          if (outcome.acked >= last) {
            await this.acked(records.length, last);
            return last;
          }
          // The cloud holds less than we sent (it should not on a 200): resume after what it holds.
          this.countAck(records.length);
          this.count('partial_ack');
          if (outcome.acked > this.log.ackedSeq) await this.log.ack(outcome.acked);
          this.log.rewind(Math.max(outcome.acked, this.log.ackedSeq));
          return Math.max(outcome.acked, this.log.ackedSeq);
        }
        case 'gap': {
          this.stats.gaps++;
          this.succeeded();
          const resumeAfter = outcome.expected - 1;
          if (resumeAfter < this.log.ackedSeq) {
            // The cloud lost state we already deleted: nothing to resend. Say so loudly and go on.
            this.count('cloud_regressed');
            this.onLog('error', 'cloud expects records already acknowledged and deleted; continuing after them', {
              expected: outcome.expected,
              acked: this.log.ackedSeq,
            });
            await this.backoffSleep(this.nextBackoff());
            return first - 1;
          }
          this.onLog('warn', 'cloud reported a sequence gap; resending', { expected: outcome.expected, first });
          this.log.rewind(resumeAfter);
          return resumeAfter;
        }
        case 'too-large': {
          this.stats.splits++;
          if (records.length <= 1) {
            await this.rejectRecords(first, last, records, 'batch too large for the cloud even with one record');
            return last;
          }
          this.batchLimit = Math.max(1, Math.floor(records.length / 2));
          const mid = records[Math.floor(records.length / 2) - 1].seq;
          const a = await this.deliver(first, mid, records.filter((r) => r.seq <= mid));
          if (a !== mid) return a;
          return this.deliver(mid + 1, last, records.filter((r) => r.seq > mid));
        }
        case 'bad': {
          this.succeeded();
          if (records.length <= 1) {
            await this.rejectRecords(first, last, records, outcome.message);
            return last;
          }
          // Bisect to find the bad records; good halves are delivered normally.
          const mid = records[Math.floor(records.length / 2) - 1].seq;
          const a = await this.deliver(first, mid, records.filter((r) => r.seq <= mid));
          if (a !== mid) return a;
          return this.deliver(mid + 1, last, records.filter((r) => r.seq > mid));
        }
        case 'retry': {
          this.failed(outcome.reason);
          const delay = Math.max(outcome.retryAfterMs ?? 0, this.nextBackoff());
          this.stats.retries++;
          await this.backoffSleep(delay);
          continue;
        }
      }
    }
  }

  /** Quarantine records the cloud refuses, then tell the cloud to skip their range (empty batch). */
  private async rejectRecords(first: number, last: number, records: WireRecord[], reason: string): Promise<void> {
    this.stats.rejectedRecords += records.length;
    this.count('rejected_by_cloud');
    this.onLog('error', 'cloud rejected records; quarantined', { first, last, reason });
    await this.log.quarantineSeqs(
      records.map((r) => r.seq),
      `cloud rejected: ${reason}`,
    );
    // An empty batch covering the range advances the cloud's high-water mark past them.
    for (;;) {
      if (!this.running) return;
      const outcome = await this.send(this.envelope(first, last, encodeBatchBody([])));
      if (outcome.kind === 'ack') {
        await this.log.ack(last);
        return;
      }
      if (outcome.kind === 'retry') {
        this.failed(outcome.reason);
        await this.backoffSleep(Math.max(outcome.retryAfterMs ?? 0, this.nextBackoff()));
        continue;
      }
      // A gap or another refusal of an empty batch: give up on this range locally; the next
      // batch's 409 handling resynchronises.
      await this.log.ack(last);
      return;
    }
  }

  private nextBackoff(): number {
    const n = Math.max(0, this.stats.consecutiveFailures - 1);
    const cap = Math.min(this.config.maxBackoffMs, this.config.minBackoffMs * 2 ** Math.min(n, 20));
    // Full jitter keeps a fleet of gateways from retrying in lockstep.
    const base = cap / 2 + this.random() * (cap / 2);
    return this.stats.circuit === 'open' ? Math.max(base, this.config.breakerCooldownMs) : base;
  }

  private succeeded(): void {
    if (this.stats.circuit === 'open') this.onLog('info', 'cloud reachable again: circuit closed');
    this.stats.consecutiveFailures = 0;
    this.stats.circuit = 'closed';
  }

  private failed(reason: string): void {
    this.stats.consecutiveFailures++;
    this.stats.lastError = reason;
    this.count(reason.split(':')[0]);
    if (this.stats.consecutiveFailures >= this.config.breakerThreshold && this.stats.circuit === 'closed') {
      this.stats.circuit = 'open';
      this.onLog('warn', 'cloud unavailable: circuit open, probing every cooldown', { reason, cooldownMs: this.config.breakerCooldownMs });
    }
  }

  private count(reason: string): void {
    this.stats.errors[reason] = (this.stats.errors[reason] ?? 0) + 1;
  }

  /**
   * The batch for [first, last] around a body built from the records' stored bytes (log-codec.ts;
   * only records stamped while the clock was unsynchronised are decoded, for restamp()).
   */
  private envelope(first: number, last: number, body: Buffer, into?: Buffer): Buffer {
    return encodeBatchEnvelope({ gw: this.config.gatewayId, inc: this.log.incarnation, first, last }, body, into);
  }

  /**
   * envelope() in a buffer from `spare` (or a new one, returned to `spare` with release()): while
   * catching up, a new ~0.5 MB buffer per batch was garbage that only a full collection frees
   * (buffers are memory outside V8's heap, and the drain makes little inside it to trigger the
   * young-generation collections that would free them).
   */
  private pooledEnvelope(first: number, last: number, body: Buffer): { bytes: Buffer; backing: Buffer } {
    const need = envelopeBytes(body.length);
    let backing = this.spare.pop();
    if (backing === undefined || backing.length < need) backing = Buffer.allocUnsafe(envelopeBytes(Math.ceil(body.length * 1.25)));
    return { bytes: this.envelope(first, last, body, backing), backing };
  }

  /**
   * A pooled envelope whose batch was acknowledged can be used again: the cloud answers 200 only
   * after reading the whole request, so nothing is still sending from it. Any other outcome drops
   * it (a server may answer before reading the body, e.g. 413).
   */
  private release(backing: Buffer): void {
    if (this.spare.length <= this.config.maxInFlight) this.spare.push(backing);
  }

  /**
   * POST one batch. `acked`: what the cloud has acknowledged so far, as the forwarder knows it; an
   * ack may still be being recorded in the log (the pipeline records it while the next batch goes).
   */
  private async send(body: Buffer, acked = this.log.ackedSeq): Promise<SendOutcome> {
    this.stats.batchesSent++;
    let res: Response;
    try {
      res = await this.fetch(new URL('/api/v1/batches', this.config.cloudUrl), {
        method: 'POST',
        headers: {
          'content-type': 'application/cbor',
          authorization: `Bearer ${this.config.token}`,
          accept: 'application/json',
          // What the cloud acknowledged so far: lets a replica that never saw this log place it.
          'x-sluice-acked': String(acked),
        },
        body: body as any,
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.config.requestTimeoutMs)]),
      });
    } catch (err) {
      return { kind: 'retry', reason: `network: ${(err as Error).cause ? String(((err as Error).cause as Error).message ?? (err as Error).cause) : (err as Error).message}` };
    }
    let json: any = undefined;
    const text = await res.text().catch(() => '');
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
    switch (res.status) {
      case 200:
        if (typeof json?.acked !== 'number') return { kind: 'retry', reason: 'bad_response: 200 without an acked sequence' };
        return { kind: 'ack', acked: json.acked };
      case 409:
        if (typeof json?.expected !== 'number') return { kind: 'retry', reason: 'bad_response: 409 without an expected sequence' };
        return { kind: 'gap', expected: json.expected };
      case 413:
        return { kind: 'too-large' };
      case 400:
        return { kind: 'bad', message: json?.error ?? text.slice(0, 200) };
      case 401:
      case 403:
        this.onLog('error', `cloud refused this gateway's credentials (HTTP ${res.status}); check --cloud-token`, { error: json?.error });
        return { kind: 'retry', reason: `auth: HTTP ${res.status}`, retryAfterMs: Math.max(retryAfterMs ?? 0, 5000) };
      default:
        return { kind: 'retry', reason: `http_${res.status}: ${json?.error ?? text.slice(0, 120)}`, retryAfterMs };
    }
  }
}

export function parseRetryAfter(h: string | null): number | undefined {
  if (!h) return undefined;
  const secs = Number(h);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const date = Date.parse(h);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}


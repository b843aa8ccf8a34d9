/**
 * The durable notification outbox: delivers committed outbox entries (alert-store.ts) to their
 * targets, in order per target, with retries and backoff, never blocking ingest.
 *
 * Guarantees:
 * - An entry is removed from LevelDB only after its target accepted it (Telegraf's "delete only after
 *   delivery"). A crash in between re-delivers it after restart with the same Idempotency-Key:
 *   at-least-once to the destination, effectively once for a receiver that honours the key.
 * - Per target, strictly in sequence order and one delivery at a time (a `resolved` never overtakes its
 *   `firing`); targets are independent, so a dead webhook delays only its own queue.
 * - Retryable failures back off exponentially (1 s doubling, capped by maxBackoffMs, or the
 *   destination's Retry-After). Refused entries (4xx), entries older than maxAgeMs, entries of a
 *   target that no longer exists and the oldest entries beyond maxPerTarget are dropped: every drop is
 *   counted with its reason and logged. Every failed attempt is counted.
 * - Memory is bounded by maxPerTarget entries per target.
 */
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { AlertStore, OutboxEntry } from './alert-store.js';
import type { CloudMetrics } from './metrics.js';
import { DeliveryError, type Deliverer } from './notifiers.js';

export interface OutboxConfig {
  store: AlertStore;
  clock: Clock;
  logger: Logger;
  metrics: CloudMetrics;
  /** Longest wait between attempts (ms, default 300000). */
  maxBackoffMs?: number;
  /** First retry delay (ms, default 1000). */
  baseBackoffMs?: number;
  /** Drop an entry still undelivered this long after it was committed (ms, default 24 h). */
  maxAgeMs?: number;
  /** Most queued entries per target (default 10000); beyond it the oldest are dropped. */
  maxPerTarget?: number;
}

interface TargetQueue {
  name: string;
  deliverer: Deliverer | undefined;
  entries: OutboxEntry[];
  attempts: number;
  nextAt: number;
  running: boolean;
  timer: unknown;
}

export class Outbox {
  private readonly queues = new Map<string, TargetQueue>();
  private readonly inflight = new Set<Promise<void>>();
  private stopped = false;
  private targetsSet = false;
  private readonly maxBackoff: number;
  private readonly baseBackoff: number;
  private readonly maxAge: number;
  private readonly maxPerTarget: number;

  constructor(private readonly cfg: OutboxConfig) {
    this.maxBackoff = cfg.maxBackoffMs ?? 300_000;
    this.baseBackoff = cfg.baseBackoffMs ?? 1000;
    this.maxAge = cfg.maxAgeMs ?? 86_400_000;
    this.maxPerTarget = cfg.maxPerTarget ?? 10_000;
  }

  /** Entries waiting, per target or in total. */
  pending(target?: string): number {
    if (target !== undefined) return this.queues.get(target)?.entries.length ?? 0;
    let n = 0;
    for (const q of this.queues.values()) n += q.entries.length;
    return n;
  }

  /** Install the deliverers (at start and on every rules reload); entries of vanished targets are dropped. */
  async setTargets(deliverers: Map<string, Deliverer>): Promise<void> {
    const old: Deliverer[] = [];
    for (const [name, q] of this.queues) {
      const d = deliverers.get(name);
      if (q.deliverer && q.deliverer !== d) old.push(q.deliverer);
      q.deliverer = d;
      if (!d && q.entries.length > 0) {
        await this.drop(q, q.entries.length, 'target_removed', `notifier ${name} is no longer configured`);
      }
    }
    for (const [name, d] of deliverers) this.queue(name).deliverer = d;
    this.targetsSet = true;
    // Close replaced deliverers once their current attempt is over (never wait for that here).
    if (old.length > 0) void Promise.allSettled([...this.inflight]).then(() => Promise.allSettled(old.map((d) => d.close())));
    for (const q of this.queues.values()) this.kick(q);
  }

  /** Entries committed at start-up (loaded from LevelDB) or just now; delivery starts at once. */
  enqueue(entries: OutboxEntry[]): void {
    const touched = new Set<TargetQueue>();
    for (const e of entries) {
      const q = this.queue(e.target);
      q.entries.push(e);
      touched.add(q);
    }
    for (const q of touched) {
      if (this.targetsSet && !q.deliverer) {
        void this.drop(q, q.entries.length, 'target_removed', `notifier ${q.name} is no longer configured`);
        continue;
      }
      if (q.entries.length > this.maxPerTarget) {
        // Never the entries being delivered right now: drop the oldest after them.
        const skip = q.running ? (q.deliverer?.batchSize ?? 1) : 0;
        void this.drop(q, q.entries.length - this.maxPerTarget, 'outbox_full', `outbox of ${q.name} holds more than ${this.maxPerTarget} entries`, skip);
      }
      this.kick(q);
    }
  }

  /**
   * Stop delivering; waits up to `graceMs` for attempts in flight, then closes the deliverers. An
   * attempt cut short stays in the outbox on disk and is sent again (same Idempotency-Key) after restart.
   */
  async stop(graceMs = 3000): Promise<void> {
    this.stopped = true;
    for (const q of this.queues.values()) {
      if (q.timer !== undefined) this.cfg.clock.clearTimeout(q.timer);
      q.timer = undefined;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    await Promise.allSettled([...this.queues.values()].map((q) => q.deliverer?.close()));
  }

  private queue(name: string): TargetQueue {
    let q = this.queues.get(name);
    if (!q) {
      q = { name, deliverer: undefined, entries: [], attempts: 0, nextAt: 0, running: false, timer: undefined };
      this.queues.set(name, q);
    }
    return q;
  }

  private kick(q: TargetQueue): void {
    if (this.stopped || q.running || q.entries.length === 0 || !q.deliverer) return;
    const wait = q.nextAt - this.cfg.clock.now();
    if (wait > 0) {
      if (q.timer === undefined) {
        q.timer = this.cfg.clock.setTimeout(() => {
          q.timer = undefined;
          this.kick(q);
        }, wait);
      }
      return;
    }
    q.running = true;
    const p = this.pump(q).finally(() => {
      q.running = false;
      this.inflight.delete(p);
      this.kick(q);
    });
    this.inflight.add(p);
  }

  private async pump(q: TargetQueue): Promise<void> {
    while (!this.stopped && q.entries.length > 0 && q.deliverer && q.nextAt <= this.cfg.clock.now()) {
      const d = q.deliverer;
      const expired = q.entries.findIndex((e) => this.cfg.clock.now() - e.createdAt <= this.maxAge);
      if (expired !== 0) {
        await this.drop(q, expired < 0 ? q.entries.length : expired, 'expired', `undelivered for longer than ${this.maxAge} ms`);
        continue;
      }
      const batch = q.entries.slice(0, d.batchSize);
      try {
        await d.deliver(batch);
      } catch (err) {
        const e = err instanceof DeliveryError ? err : new DeliveryError((err as Error).message, true);
        if (!e.retryable) {
          await this.drop(q, batch.length, 'rejected', e.message);
          continue;
        }
        q.attempts++;
        this.cfg.metrics.notificationFailures.inc({ target: q.name });
        const backoff = Math.min(this.maxBackoff, this.baseBackoff * 2 ** Math.min(q.attempts - 1, 30));
        const wait = Math.min(this.maxBackoff, Math.max(backoff, e.retryAfterMs ?? 0));
        q.nextAt = this.cfg.clock.now() + wait;
        // One line for the first failure and then every tenth, not one per retry.
        if (q.attempts === 1 || q.attempts % 10 === 0) this.cfg.logger.warn({ target: q.name, attempts: q.attempts, retryInMs: wait, pending: q.entries.length }, `notification delivery failed: ${e.message}`);
        return;
      }
      if (q.attempts > 0) this.cfg.logger.info({ target: q.name, attempts: q.attempts }, 'notification delivery recovered');
      q.attempts = 0;
      q.nextAt = 0;
      this.cfg.metrics.notificationsSent.inc({ target: q.name }, batch.length);
      // By identity: the queue may have changed during the attempt (drops, a new target set).
      const sent = new Set(batch);
      q.entries = q.entries.filter((x) => !sent.has(x));
      // If this delete is lost in a crash, the entry is sent again after restart with the same key.
      await this.cfg.store.write(this.cfg.store.removeOps(batch.map((b) => b.seq))).catch((err) => this.cfg.logger.warn({ err: (err as Error).message }, 'could not remove delivered outbox entries'));
    }
  }

  private async drop(q: TargetQueue, n: number, reason: string, why: string, skip = 0): Promise<void> {
    const gone = q.entries.splice(skip, n);
    if (gone.length === 0) return;
    this.cfg.metrics.notificationsDropped.inc({ target: q.name, reason }, gone.length);
    this.cfg.logger.error({ target: q.name, reason, dropped: gone.length, ids: gone.slice(0, 5).map((e) => `${e.transition.id}:${e.transition.to}`) }, `notifications dropped: ${why}`);
    await this.cfg.store.write(this.cfg.store.removeOps(gone.map((e) => e.seq))).catch(() => undefined);
  }
}

/**
 * The alert tier of the cloud: rules (alert-rules.ts) → engine (alert-engine.ts) → durable state and
 * outbox (alert-store.ts) → deliveries (outbox.ts, notifiers.ts).
 *
 * How it stays consistent with the high-water mark (ingest.ts calls `afterWrite` for every batch
 * that is not a pure replay, after InfluxDB accepted its points):
 * 1. Only records above the mark reach the engine; a replayed batch never does.
 * 2. Under a lock on the batch's devices, the engine evaluates the new records against the committed
 *    state WITHOUT changing it; the resulting state changes and outbox entries (one per notifier, plus
 *    one for the `alerts` history in InfluxDB) are handed to `persist`, which stores them in the SAME
 *    atomic, fsynced LevelDB batch as the new mark.
 * 3. Only then is the in-memory state committed and the outbox started.
 * A crash before step 2 completes leaves mark, state and outbox as they were: the gateway resends, the
 * engine re-evaluates the same records from the same state and produces the same transitions with the
 * same ids. A crash after it finds everything on disk: the resent batch is a replay. So no transition is
 * lost or committed twice, and no notification leaves the outbox before its transition is durable.
 *
 * Wall clock: absent-data deadlines of fully silent devices run on the injected Clock; the deadline is
 * persisted, so a restart resumes it (pushed to at least start + absentStartGraceMs, to give gateways
 * time to deliver their backlog before a cloud restart is taken for silent devices).
 *
 * Rules: loaded at start (a bad file is a start error), reloaded on file change (fs.watch) or
 * `reload()` (SIGHUP). A bad file on reload is refused, logged with rule and key, and the previous
 * rules stay active. A reload keeps the state of every rule that still exists.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { AggRecord, RawRecord } from '../protocols/batch.js';
import { isSluiceError, SluiceError } from '../protocols/errors.js';
import { AlertEngine, toObservations, type Evaluation, type KeyState, type Transition } from './alert-engine.js';
import { describeRule, EMPTY_RULES, parseRules, type RuleSet } from './alert-rules.js';
import { AlertStore, HISTORY_TARGET, type OutboxEntry } from './alert-store.js';
import { systemClock, type Clock } from './clock.js';
import type { HwmStore, SublevelOp } from './hwm-store.js';
import type { PointSink } from './influx-common.js';
import { KeyLock } from './key-lock.js';
import type { CloudMetrics } from './metrics.js';
import { createDeliverer, HistoryDeliverer, type Deliverer } from './notifiers.js';
import { Outbox } from './outbox.js';

export interface AlertServiceConfig {
  store: HwmStore;
  sink: PointSink;
  metrics: CloudMetrics;
  logger: Logger;
  clock?: Clock;
  /** YAML rules file; watched for changes unless `watch` is false. */
  rulesFile?: string;
  /** Rules given directly (tests, embedding); ignored when rulesFile is set. */
  rules?: RuleSet;
  watch?: boolean;
  /** After a start, silent-device deadlines are at least this far away (ms, default 30000). */
  absentStartGraceMs?: number;
  /** Outbox retry cap and first delay (ms). */
  maxBackoffMs?: number;
  baseBackoffMs?: number;
  /** Called after each committed transition (live events). */
  onTransition?: (t: Transition) => void;
}

export type ReloadResult = { ok: true; changed: boolean; rules: number } | { ok: false; error: SluiceError };

export interface RulesStatus {
  source: string | undefined;
  rules: { id: string; severity: string; notify: string[]; metric: string; condition: string; thresholds: number[] }[];
  notifiers: string[];
  loadedAt: number | undefined;
  lastError?: { message: string; at: number; rule?: string; key?: string };
}

export class AlertService {
  readonly engine = new AlertEngine();
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly locks = new KeyLock();
  private readonly astore: AlertStore;
  private readonly outbox: Outbox;
  private rules: RuleSet = EMPTY_RULES;
  private loadedAt: number | undefined;
  private lastError: RulesStatus['lastError'];
  private timer: unknown;
  private armedAt: number | undefined;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private readonly background = new Set<Promise<unknown>>();
  private reloads: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(private readonly cfg: AlertServiceConfig) {
    this.clock = cfg.clock ?? systemClock;
    this.log = cfg.logger.child({ component: 'alerts' });
    this.astore = new AlertStore(cfg.store);
    this.outbox = new Outbox({
      store: this.astore,
      clock: this.clock,
      logger: this.log,
      metrics: cfg.metrics,
      maxBackoffMs: cfg.maxBackoffMs,
      baseBackoffMs: cfg.baseBackoffMs,
    });
    cfg.metrics.setAlertSource(() => {
      let pending = 0;
      let firing = 0;
      for (const s of this.engine.list()) {
        if (s.state === 'pending') pending++;
        else if (s.state === 'firing') firing++;
      }
      return { pending, firing, outbox: this.outbox.pending() };
    });
  }

  /** Load rules (throws SLUICE_BAD_CONFIG naming rule and key), state and outbox; start timers and the watcher. */
  async start(): Promise<void> {
    const rules = this.cfg.rulesFile ? await this.readRules() : (this.cfg.rules ?? EMPTY_RULES);
    await this.astore.open();
    this.engine.load(await this.astore.loadStates());
    const dropped = this.engine.setRules(rules);
    await this.astore.write(this.astore.ops({ changed: new Map(), removed: dropped }));
    this.rules = rules;
    this.loadedAt = this.clock.now();
    this.cfg.metrics.rulesReloads.inc({ result: 'ok' });
    // Deadlines that passed while the cloud was down fire no earlier than start + grace.
    const earliest = this.clock.now() + (this.cfg.absentStartGraceMs ?? 30_000);
    const pushed = new Map<string, KeyState>();
    for (const s of this.engine.list()) if (s.deadline !== undefined && s.deadline < earliest) pushed.set(`${s.rule}!${s.device}`, { ...s, deadline: earliest });
    this.engine.commit({ changed: pushed, removed: [], transitions: [], late: 0 });
    this.outbox.enqueue(await this.astore.loadOutbox());
    await this.outbox.setTargets(this.deliverers(rules));
    this.arm();
    if (this.cfg.rulesFile && this.cfg.watch !== false) this.startWatch(this.cfg.rulesFile);
    this.log.info({ rules: rules.rules.length, states: this.engine.size, outbox: this.outbox.pending(), source: this.cfg.rulesFile }, 'alert rules loaded');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = undefined;
    clearTimeout(this.debounce);
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await Promise.allSettled([...this.background]);
    await this.outbox.stop();
  }

  /**
   * Called by ingest for the NEW records of a batch, after InfluxDB accepted them. `persist` must store
   * the batch's high-water mark together with the given operations, atomically.
   */
  async afterWrite(recs: RawRecord[], aggs: AggRecord[], persist: (ops: SublevelOp[]) => Promise<void>): Promise<void> {
    if (this.engine.ruleList().length === 0 || recs.length + aggs.length === 0) return persist([]);
    const obs = toObservations(recs, aggs);
    await this.locks.run(
      obs.map((o) => o.device),
      async () => {
        const ev = this.engine.evaluate(obs, this.clock.now());
        const entries = this.entries(ev);
        await persist(this.astore.ops(ev, entries));
        this.committed(ev, entries);
      },
    );
  }

  /** Reload the rules file; the previous rules stay when it is invalid. Reloads run one at a time. */
  reload(): Promise<ReloadResult> {
    const run = this.reloads.then(() => this.reloadNow());
    this.reloads = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(): Promise<ReloadResult> {
    if (!this.cfg.rulesFile) return { ok: true, changed: false, rules: this.rules.rules.length };
    let next: RuleSet;
    try {
      next = await this.readRules();
    } catch (err) {
      const error = isSluiceError(err) ? err : new SluiceError('SLUICE_BAD_CONFIG', (err as Error).message);
      this.lastError = { message: error.message, at: this.clock.now(), ...(error.detail as { rule?: string; key?: string }) };
      this.cfg.metrics.rulesReloads.inc({ result: 'error' });
      this.log.error({ code: error.code, ...error.detail }, `rules not reloaded, previous rules stay active: ${error.message}`);
      return { ok: false, error };
    }
    if (next.hash === this.rules.hash) {
      this.cfg.metrics.rulesReloads.inc({ result: 'unchanged' });
      return { ok: true, changed: false, rules: next.rules.length };
    }
    await this.locks.runExclusive(async () => {
      const dropped = this.engine.setRules(next);
      await this.astore.write(this.astore.ops({ changed: new Map(), removed: dropped }));
      this.rules = next;
    });
    await this.outbox.setTargets(this.deliverers(next));
    this.loadedAt = this.clock.now();
    this.lastError = undefined;
    this.cfg.metrics.rulesReloads.inc({ result: 'ok' });
    this.log.info({ rules: next.rules.length, notifiers: next.notifiers.size }, 'alert rules reloaded');
    this.armedAt = undefined;
    this.arm();
    return { ok: true, changed: true, rules: next.rules.length };
  }

  status(): RulesStatus {
    return {
      source: this.cfg.rulesFile,
      rules: this.rules.rules.map((r) => ({
        id: r.id,
        severity: r.severity,
        notify: r.notify,
        metric: r.input.kind === 'raw' ? r.input.metric : r.input.kind === 'agg' ? `telemetry_${r.input.window}.${r.input.metric}_${r.input.stat}` : 'any',
        condition: describeRule(r),
        thresholds: r.cond.kind === 'absent' ? [] : [r.cond.lo, r.cond.hi].filter((x): x is number => x !== undefined),
      })),
      notifiers: [...this.rules.notifiers.keys()],
      loadedAt: this.loadedAt,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** Outbox entries still waiting (all targets, or one). */
  pendingNotifications(target?: string): number {
    return this.outbox.pending(target);
  }

  /** Wait until background work (a wall-clock firing in progress) is done. For tests and stop(). */
  async idle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  private async readRules(): Promise<RuleSet> {
    const file = this.cfg.rulesFile!;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new SluiceError('SLUICE_BAD_CONFIG', `--rules ${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        detail: { key: 'rules' },
      });
    }
    return parseRules(text, `--rules ${file}`);
  }

  private deliverers(rules: RuleSet): Map<string, Deliverer> {
    const m = new Map<string, Deliverer>([[HISTORY_TARGET, new HistoryDeliverer(this.cfg.sink)]]);
    for (const [name, spec] of rules.notifiers) m.set(name, createDeliverer(spec, this.log));
    return m;
  }

  private entries(ev: Evaluation): OutboxEntry[] {
    // History gets every transition; notifiers only the ones people act on.
    return this.astore.entries(ev.transitions, (t) => (t.to === 'firing' || t.to === 'resolved' ? [HISTORY_TARGET, ...t.notify] : [HISTORY_TARGET]), this.clock.now());
  }

  private committed(ev: Evaluation, entries: OutboxEntry[]): void {
    this.engine.commit(ev);
    if (ev.late > 0) this.cfg.metrics.alertLate.inc(ev.late);
    for (const t of ev.transitions) {
      this.cfg.metrics.alertTransitions.inc({ rule: t.rule, state: t.to });
      const line = { alert: t.id, rule: t.rule, device: t.device, from: t.from, to: t.to, value: t.value, eventTime: new Date(t.ts).toISOString() };
      if (t.to === 'firing') this.log.warn(line, t.message);
      else this.log.info(line, t.message);
      try {
        this.cfg.onTransition?.(t);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'transition listener failed');
      }
    }
    this.outbox.enqueue(entries);
    for (const s of ev.changed.values()) {
      if (s.deadline !== undefined && (this.armedAt === undefined || s.deadline < this.armedAt)) {
        this.armedAt = undefined;
        this.arm();
        break;
      }
    }
  }

  /** Arm the wall-clock timer for the earliest absent deadline (a single timer for all keys). */
  private arm(): void {
    if (this.stopped) return;
    const next = this.engine.nextDeadline();
    if (next === undefined) return;
    if (this.timer !== undefined && this.armedAt !== undefined && this.armedAt <= next) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.armedAt = next;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.armedAt = undefined;
      const p = this.fireDue().catch((err) => this.log.error({ err: (err as Error).message }, 'absent-data check failed'));
      this.background.add(p);
      void p.finally(() => {
        this.background.delete(p);
        this.arm();
      });
    }, next - this.clock.now());
  }

  private async fireDue(): Promise<void> {
    const now = this.clock.now();
    const devices = new Set([...this.engine.due(now).changed.values()].map((s) => s.device));
    if (devices.size === 0 || this.stopped) return;
    await this.locks.run(devices, async () => {
      const ev = this.engine.due(this.clock.now(), devices);
      if (ev.changed.size === 0) return;
      const entries = this.entries(ev);
      await this.astore.write(this.astore.ops(ev, entries));
      this.committed(ev, entries);
    });
  }

  private startWatch(file: string): void {
    const full = resolve(file);
    const name = basename(full);
    try {
      // Watch the directory: editors and config tools replace the file (rename) rather than write it.
      this.watcher = watch(dirname(full), (_event, changed) => {
        if (changed !== null && changed !== name) return;
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => {
          if (this.stopped) return;
          const p = this.reload();
          this.background.add(p);
          void p.finally(() => this.background.delete(p));
        }, 100);
        this.debounce.unref();
      });
      this.watcher.on('error', (err) => this.log.warn({ err: err.message }, 'rules file watch failed; reload with SIGHUP'));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot watch the rules file; reload with SIGHUP');
    }
  }
}

/** The notification outbox with scripted deliverers and a manual clock: order, backoff, drops, bounds. */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Transition } from '../../cloud/alert-engine.js';
import type { AlertStore, OutboxEntry } from '../../cloud/alert-store.js';
import type { SublevelOp } from '../../cloud/hwm-store.js';
import { CloudMetrics } from '../../cloud/metrics.js';
import { DeliveryError, type Deliverer } from '../../cloud/notifiers.js';
import { Outbox } from '../../cloud/outbox.js';
import { ManualClock } from '../support/cloud-clock.js';
import { until } from '../support/tmp.js';

function entry(seq: number, target = 'hook', createdAt = 0): OutboxEntry {
  const t = { id: `a${seq}`, to: seq % 2 ? 'firing' : 'resolved' } as Transition;
  return { seq, target, createdAt, transition: t };
}

class Script implements Deliverer {
  readonly got: number[] = [];
  readonly fail: (DeliveryError | undefined)[] = [];
  gate: Promise<void> | undefined;
  calls = 0;
  constructor(readonly batchSize = 1) {}
  async deliver(entries: OutboxEntry[]): Promise<void> {
    this.calls++;
    if (this.gate) await this.gate;
    const f = this.fail.shift();
    if (f) throw f;
    this.got.push(...entries.map((e) => e.seq));
  }
  async close(): Promise<void> {}
}

function outbox(clock: ManualClock, opts: { maxPerTarget?: number; maxAgeMs?: number } = {}) {
  const removed: string[] = [];
  const store = {
    removeOps: (seqs: number[]) => seqs.map((s) => ({ type: 'del', key: String(s) }) as unknown as SublevelOp),
    write: async (ops: SublevelOp[]) => void removed.push(...ops.map((o) => o.key)),
  } as unknown as AlertStore;
  const metrics = new CloudMetrics();
  const box = new Outbox({ store, clock, logger: pino({ level: 'silent' }), metrics, baseBackoffMs: 1000, maxBackoffMs: 4000, ...opts });
  const count = async (name: string) => (await metrics.registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#'));
  return { box, removed, count };
}

describe('outbox', () => {
  it('delivers in order per target, removes only delivered entries, and batches where the target allows', async () => {
    const clock = new ManualClock(0);
    const { box, removed } = outbox(clock);
    const hook = new Script(1);
    const hist = new Script(500);
    await box.setTargets(new Map<string, Deliverer>([['hook', hook], ['@history', hist]]));
    box.enqueue([entry(1), entry(2, '@history'), entry(3), entry(4, '@history'), entry(5)]);
    await until('all delivered', () => box.pending() === 0);
    expect(hook.got).toEqual([1, 3, 5]);
    expect(hist.got).toEqual([2, 4]);
    expect(removed.sort()).toEqual(['1', '2', '3', '4', '5']);
  });

  it('backs off 1 s, 2 s, 4 s (capped) on retryable failures, keeps order, honours Retry-After', async () => {
    const clock = new ManualClock(0);
    const { box, count } = outbox(clock);
    const hook = new Script();
    hook.fail.push(new DeliveryError('503', true), new DeliveryError('503', true), new DeliveryError('503', true), new DeliveryError('429', true, 3500));
    await box.setTargets(new Map([['hook', hook]]));
    box.enqueue([entry(1), entry(2)]);
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      await until('retry armed', () => clock.pending().length === 1);
      waits.push(clock.pending()[0] - clock.now());
      clock.advance(waits[i]);
    }
    await until('delivered', () => box.pending() === 0);
    expect(waits).toEqual([1000, 2000, 4000, 4000]);
    expect(hook.got).toEqual([1, 2]);
    expect(await count('sluice_cloud_notification_failures_total')).toEqual(['sluice_cloud_notification_failures_total{target="hook"} 4']);
  });

  it('drops refused, expired and overflowing entries, counted by reason, never the one in flight', async () => {
    const clock = new ManualClock(100_000);
    const { box, count } = outbox(clock, { maxPerTarget: 3, maxAgeMs: 50_000 });
    const hook = new Script();
    hook.fail.push(new DeliveryError('400', false));
    await box.setTargets(new Map([['hook', hook]]));
    box.enqueue([entry(1, 'hook', 100_000), entry(2, 'hook', 10_000), entry(3, 'hook', 100_000)]);
    await until('settled', () => box.pending() === 0);
    expect(hook.got).toEqual([3]);
    // Overflow: five entries for a target that holds three while it is down.
    hook.fail.push(new DeliveryError('down', true));
    box.enqueue([4, 5, 6, 7, 8].map((s) => entry(s, 'hook', 100_000)));
    await until('retry armed', () => clock.pending().length === 1);
    expect(box.pending('hook')).toBe(3);
    clock.advance(1000);
    await until('settled again', () => box.pending() === 0);
    expect(hook.got).toEqual([3, 6, 7, 8]);
    // Overflow while an entry is in flight: the oldest after it go.
    let release!: () => void;
    hook.gate = new Promise<void>((r) => (release = r));
    const calls = hook.calls;
    box.enqueue([entry(9, 'hook', 100_000)]);
    await until('in flight', () => hook.calls === calls + 1);
    box.enqueue([10, 11, 12, 13].map((s) => entry(s, 'hook', 100_000)));
    release();
    hook.gate = undefined;
    await until('settled at last', () => box.pending() === 0);
    expect(hook.got).toEqual([3, 6, 7, 8, 9, 12, 13]);
    expect((await count('sluice_cloud_notifications_dropped_total')).sort()).toEqual([
      'sluice_cloud_notifications_dropped_total{target="hook",reason="expired"} 1',
      'sluice_cloud_notifications_dropped_total{target="hook",reason="outbox_full"} 4',
      'sluice_cloud_notifications_dropped_total{target="hook",reason="rejected"} 1',
    ]);
  });

  it('entries of a target that no longer exists are dropped, not kept forever', async () => {
    const clock = new ManualClock(0);
    const { box, count } = outbox(clock);
    box.enqueue([entry(1, 'gone')]);
    await box.setTargets(new Map([['hook', new Script()]]));
    expect(box.pending()).toBe(0);
    box.enqueue([entry(2, 'gone')]);
    expect(box.pending()).toBe(0);
    expect(await count('sluice_cloud_notifications_dropped_total')).toEqual(['sluice_cloud_notifications_dropped_total{target="gone",reason="target_removed"} 2']);
  });
});

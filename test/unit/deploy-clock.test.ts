/**
 * gateway/clock.ts: a Pi without RTC boots at 1970, receives readings, then NTP steps the clock.
 * Readings stamped before the step are flagged and, once read back from the (real) log, re-stamped
 * with their true receipt time. All time is injected: no sleeps.
 */
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FLAG_CLOCK_UNSYNCED, FLAG_GATEWAY_TS, type RawRecord } from '../../protocols/batch.js';
import { GatewayClock, kernelSyncProbe, type TimeSource } from '../../gateway/clock.js';
import { Ingest } from '../../gateway/ingest.js';
import { DurableLog } from '../../gateway/log.js';
import { tempDir } from '../support/tmp.js';

const FLOOR = Date.UTC(2026, 0, 1);
const REAL = Date.UTC(2026, 10, 22, 12, 0, 0);

/** A Pi's clocks: wall starts near 1970 (boot), monotonic from 0; `step()` is NTP setting the time. */
function fakeTime(bootWall = 5_000): TimeSource & { advance(ms: number): void; step(to: number): void } {
  let mono = 0;
  let wall = bootWall;
  return {
    wall: () => wall,
    mono: () => mono,
    advance(ms) {
      mono += ms;
      wall += ms;
    },
    step(to) {
      wall = to;
    },
  };
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('GatewayClock', () => {
  it('floor mode: flags stamps before the floor, corrects them after the jump', () => {
    const t = fakeTime();
    const syncs: unknown[] = [];
    const clock = new GatewayClock({ check: 'floor', notBeforeMs: FLOOR }, { time: t, onSync: (i) => syncs.push(i) });
    const a = clock.stamp();
    expect(a).toMatchObject({ ts: 5_000, unsynced: true });
    clock.track(1, a);
    t.advance(1_000);
    const b = clock.stamp();
    clock.track(2, b);
    t.advance(500);
    t.step(REAL); // NTP: wall jumps to the real time, monotonic does not
    const c = clock.stamp();
    expect(c.unsynced).toBe(false);
    expect(clock.stats).toMatchObject({ synced: true, unsyncedStamps: 2, source: 'floor', syncedAt: REAL });
    expect(syncs).toHaveLength(1);

    const rec = (seq: number, ts: number): RawRecord => ({ seq, dev: 'd', ts, vals: { x: 1 }, fl: FLAG_GATEWAY_TS | FLAG_CLOCK_UNSYNCED });
    // Seq 1 arrived 1.5 s before the sync, seq 2 0.5 s before.
    expect(clock.restamp(rec(1, a.ts))).toMatchObject({ ts: REAL - 1_500, fl: FLAG_GATEWAY_TS });
    expect(clock.restamp(rec(2, b.ts))).toMatchObject({ ts: REAL - 500, fl: FLAG_GATEWAY_TS });
    // Idempotent: a resend of the same stored record gets the same ts.
    expect(clock.restamp(rec(1, a.ts)).ts).toBe(REAL - 1_500);
    expect(clock.stats.restamped).toBe(2);
    // A flagged record this process did not stamp (an earlier boot) is left alone.
    expect(clock.restamp(rec(99, 7))).toEqual(rec(99, 7));
    // Device timestamps and synced stamps are never touched.
    const dev: RawRecord = { seq: 3, dev: 'd', ts: 123, vals: { x: 1 } };
    expect(clock.restamp(dev)).toBe(dev);
  });

  it('does not correct before the clock is synchronised', () => {
    const t = fakeTime();
    const clock = new GatewayClock({ check: 'floor', notBeforeMs: FLOOR }, { time: t });
    const s = clock.stamp();
    clock.track(1, s);
    const rec: RawRecord = { seq: 1, dev: 'd', ts: s.ts, vals: { x: 1 }, fl: FLAG_GATEWAY_TS | FLAG_CLOCK_UNSYNCED };
    expect(clock.restamp(rec)).toBe(rec);
  });

  it('auto mode: the kernel decides; a clock past the floor but not NTP-synced is still flagged', async () => {
    const t = fakeTime(Date.UTC(2026, 10, 20)); // fake-hwclock restored a plausible but stale time
    let kernel: boolean | undefined = false;
    const clock = new GatewayClock({ check: 'auto', notBeforeMs: FLOOR, probeIntervalMs: 60_000 }, { time: t, probe: async () => kernel });
    await clock.start();
    cleanups.push(async () => clock.stop());
    const s1 = clock.stamp();
    expect(s1.unsynced).toBe(true);
    clock.track(10, s1);
    t.advance(2_000);
    const s2 = clock.stamp();
    clock.track(11, s2);
    // A second step while still unsynchronised (e.g. a manual date) starts a new range.
    t.advance(1_000);
    t.step(Date.UTC(2026, 10, 21));
    const s3 = clock.stamp();
    clock.track(12, s3);
    t.advance(1_000);
    t.step(REAL);
    kernel = true;
    await (clock as unknown as { poll(): Promise<void> }).poll();
    expect(clock.isSynced()).toBe(true);
    expect(clock.stats.source).toBe('kernel');
    const fl = FLAG_GATEWAY_TS | FLAG_CLOCK_UNSYNCED;
    expect(clock.restamp({ seq: 10, dev: 'd', ts: s1.ts, vals: { x: 1 }, fl }).ts).toBe(REAL - 4_000);
    expect(clock.restamp({ seq: 11, dev: 'd', ts: s2.ts, vals: { x: 1 }, fl }).ts).toBe(REAL - 2_000);
    expect(clock.restamp({ seq: 12, dev: 'd', ts: s3.ts, vals: { x: 1 }, fl }).ts).toBe(REAL - 1_000);
  });

  it('auto mode without an answer from the kernel falls back to the floor', async () => {
    const t = fakeTime(REAL);
    const clock = new GatewayClock({ check: 'auto', notBeforeMs: FLOOR }, { time: t, probe: async () => undefined });
    await clock.start();
    expect(clock.stamp().unsynced).toBe(false);
    expect(clock.stats).toMatchObject({ synced: true, source: 'floor', unsyncedStamps: 0 });
  });

  it('off: never flags', () => {
    const clock = new GatewayClock({ check: 'off' }, { time: fakeTime() });
    expect(clock.stamp().unsynced).toBe(false);
  });

  it('ingest → real log → restamp: only gateway-stamped readings received before the jump change', async () => {
    const tmp = await tempDir('sluice-clock-');
    cleanups.push(() => tmp.remove());
    const log = new DurableLog({ dir: join(tmp.path, 'log'), sync: 'never' });
    await log.open();
    cleanups.push(() => log.close());
    const t = fakeTime();
    const clock = new GatewayClock({ check: 'floor', notBeforeMs: FLOOR }, { time: t });
    const ingest = new Ingest(log, { clock });
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o));
    const commits: Promise<void>[] = [];
    const put = (payload: unknown) => {
      const r = ingest.accept('devices/pi-1/telemetry', enc(payload), 'c1');
      if (!r?.ok) throw new Error('refused');
      commits.push(r.committed);
    };
    put({ values: { t: 1 } }); // seq 1: gateway ts, unsynced
    t.advance(250);
    put({ ts: REAL - 60_000, values: { t: 2 } }); // seq 2: device ts, left alone
    t.advance(750);
    put({ values: { t: 3 } }); // seq 3: gateway ts, unsynced
    t.advance(1_000);
    t.step(REAL);
    put({ values: { t: 4 } }); // seq 4: after the sync
    await Promise.all(commits);

    const { records } = await log.read(0, 100);
    const raw = records.filter((r) => r.kind === 'raw') as RawRecord[];
    expect(raw.map((r) => r.fl ?? 0)).toEqual([FLAG_GATEWAY_TS | FLAG_CLOCK_UNSYNCED, 0, FLAG_GATEWAY_TS | FLAG_CLOCK_UNSYNCED, FLAG_GATEWAY_TS]);
    const fixed = raw.map((r) => clock.restamp(r));
    expect(fixed.map((r) => r.ts)).toEqual([REAL - 2_000, REAL - 60_000, REAL - 1_000, REAL]);
    expect(fixed.every((r) => !((r.fl ?? 0) & FLAG_CLOCK_UNSYNCED))).toBe(true);
    // The log keeps the original stamps: the correction is derived again on every read.
    const again = (await log.read(0, 100)).records as RawRecord[];
    expect(again[0].ts).toBe(5_000);
  });
});

describe('kernelSyncProbe', () => {
  it('reads timesyncd’s marker, else asks timedatectl, and stops asking once timedatectl cannot answer', async () => {
    const tmp = await tempDir('sluice-probe-');
    cleanups.push(() => tmp.remove());
    const runDir = join(tmp.path, 'timesync');
    const bin = join(tmp.path, 'timedatectl');
    const calls = join(tmp.path, 'calls');
    const answerFile = join(tmp.path, 'answer');
    await writeFile(bin, `#!/bin/sh\necho x >> "${calls}"\n[ -f "${answerFile}" ] || exit 1\ncat "${answerFile}"\n`);
    await chmod(bin, 0o755);
    await writeFile(answerFile, 'no\n');
    const probe = kernelSyncProbe({ runDir, timedatectl: bin });
    expect(await probe()).toBe(false);
    await rm(answerFile);
    expect(await probe()).toBe(false); // answered before: a failure now means "not yet"
    await writeFile(answerFile, 'yes\n');
    expect(await probe()).toBe(true);
    await mkdir(runDir);
    await writeFile(join(runDir, 'synchronized'), '');
    expect(await probe()).toBe(true);

    const broken = kernelSyncProbe({ runDir: join(tmp.path, 'none'), timedatectl: join(tmp.path, 'missing') });
    expect(await broken()).toBeUndefined();
    expect(await broken()).toBeUndefined();
  });
});

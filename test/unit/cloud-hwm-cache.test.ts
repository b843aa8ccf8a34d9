/**
 * HwmStore keeps the marks it read or stored in memory: the copy must always say what LevelDB says
 * (a lookup racing a set never leaves the older mark behind, a failed set changes nothing, a
 * reopened store reads the disk).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HwmStore } from '../../cloud/hwm-store.js';

describe('HwmStore marks in memory', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-cloud-hwm-cache-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a lookup racing a set never brings the older mark back', async () => {
    const s = new HwmStore(dir);
    await s.open();
    await s.set('gw', 'i', 5);
    await s.close();
    await s.open(); // nothing in memory: the next lookup reads LevelDB
    for (let hw = 6; hw < 40; hw++) {
      const racing = s.lookup('gw', 'i');
      const racingOther = s.lookup('gw', `j${hw}`);
      await s.set('gw', 'i', hw);
      const seen = await racing;
      expect(seen === hw - 1 || seen === hw).toBe(true);
      expect(await racingOther).toBeUndefined();
      expect(await s.lookup('gw', 'i')).toBe(hw);
      expect(await s.get('gw', 'i')).toBe(hw);
    }
    await s.close();
  });

  it('a refused or failed set leaves the mark as it is; a reopened store reads what is on disk', async () => {
    const s = new HwmStore(dir);
    await s.open();
    await s.set('gw', 'i', 10);
    await expect(s.set('gw', 'i', 9)).rejects.toThrow(/would go back/);
    expect(await s.lookup('gw', 'i')).toBe(10);
    // a batch whose other writes are invalid fails as a whole, mark included
    const sub = s.sublevel<unknown>('x');
    await expect(s.set('gw', 'i', 11, 0, [{ type: 'put', sublevel: sub, key: 'k', value: undefined }])).rejects.toThrow();
    expect(await s.lookup('gw', 'i')).toBe(10);
    await s.set('gw', 'i', 12, 0, [{ type: 'put', sublevel: sub, key: 'k', value: 1 }]);
    expect(await s.lookup('gw', 'i')).toBe(12);
    await s.close();
    const again = new HwmStore(dir);
    await again.open();
    expect(await again.lookup('gw', 'i')).toBe(12);
    expect(await again.lookup('gw', 'other')).toBeUndefined();
    await again.close();
  });
});

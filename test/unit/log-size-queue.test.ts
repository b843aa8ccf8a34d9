/** The log's queue of (sequence, size) of records read and not yet acknowledged (gateway/log.ts). */
import { describe, expect, it } from 'vitest';
import { SizeQueue } from '../../gateway/log.js';

describe('SizeQueue', () => {
  it('frees exact counts and sizes up to a sequence, across growth and reuse of its buffer', () => {
    const q = new SizeQueue();
    const ref: Array<[number, number]> = [];
    let seq = 0;
    for (let round = 0; round < 50; round++) {
      const n = 1 + ((round * 7919) % 3000);
      for (let i = 0; i < n; i++) {
        seq++;
        q.push(seq, seq % 97);
        ref.push([seq, seq % 97]);
      }
      const upTo = ref[Math.floor(ref.length / 2)][0];
      const expected = ref.filter(([s]) => s <= upTo);
      expect(q.shiftUpTo(upTo)).toEqual({ records: expected.length, bytes: expected.reduce((a, [, b]) => a + b, 0) });
      ref.splice(0, expected.length);
      expect(q.length).toBe(ref.length);
    }
  });

  it('drops what follows a sequence (rewind) and removes one entry (quarantine)', () => {
    const q = new SizeQueue();
    for (let s = 1; s <= 10; s++) q.push(s, 10 * s);
    q.remove(4);
    q.dropAfter(7);
    expect(q.length).toBe(6);
    expect(q.shiftUpTo(100)).toEqual({ records: 6, bytes: 10 + 20 + 30 + 50 + 60 + 70 });
    expect(q.length).toBe(0);
  });
});

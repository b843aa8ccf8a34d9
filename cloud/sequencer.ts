/**
 * Puts a gateway's pipelined batches back in order, and lets them overlap where that is safe.
 *
 * A gateway may have several batches in flight (over several HTTP connections), so batch N+1 can
 * reach the cloud before batch N. `admit` holds N+1 until N has been admitted (or `waitMs` passes;
 * then the normal gap rule answers 409 and the gateway resends in order). An admitted batch may write
 * its points at once — points are idempotent, so writing N+1 while N is still writing costs nothing
 * if either fails — but it commits (alerts, high-water mark) only after N committed or failed: the
 * returned `turn` resolves then, and the batch calls `done()` when its own commit is over.
 * Nothing here decides what is written or acknowledged: the high-water mark does.
 *
 * State is in memory and per replica; after a restart the first batch of each sequence space learns
 * the position from `initial` (the stored mark, or what the gateway says it has had acknowledged).
 */
export interface Slot {
  /** Resolves when every batch admitted before this one has finished its commit. */
  turn: Promise<void>;
  /** Call once this batch's commit is over (success or not). */
  done(): void;
  /** False when the batch was let in only because waiting for its predecessor timed out. */
  inOrder: boolean;
}

export class BatchSequencer {
  /** First sequence after the latest admitted batch. */
  private readonly next = new Map<string, number>();
  /** Resolves when the latest admitted batch finished its commit. */
  private readonly tail = new Map<string, Promise<void>>();
  private readonly waiting = new Map<string, Set<{ first: number; wake: (arrived?: boolean) => void }>>();

  constructor(private readonly waitMs = 2_000) {}

  async admit(key: string, first: number, last: number, initial: () => Promise<number | undefined>): Promise<Slot> {
    if (!this.next.has(key)) {
      const hw = await initial();
      if (hw !== undefined && !this.next.has(key)) this.next.set(key, hw + 1);
    }
    const expected = this.next.get(key);
    let inOrder = true;
    if (expected !== undefined && first > expected) inOrder = await this.waitFor(key, first);
    const prev = this.tail.get(key) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((r) => (done = r));
    const tail = prev.then(() => mine);
    this.tail.set(key, tail);
    void tail.then(() => {
      if (this.tail.get(key) === tail) this.tail.delete(key);
    });
    this.advance(key, last + 1);
    return { turn: prev, done, inOrder };
  }

  /** True if the predecessor arrived, false on timeout. */
  private waitFor(key: string, first: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let set = this.waiting.get(key);
      if (!set) this.waiting.set(key, (set = new Set()));
      const w = {
        first,
        wake: (arrived = true) => {
          clearTimeout(timer);
          set!.delete(w);
          if (set!.size === 0 && this.waiting.get(key) === set) this.waiting.delete(key);
          resolve(arrived);
        },
      };
      const timer = setTimeout(() => w.wake(false), this.waitMs);
      timer.unref();
      set.add(w);
    });
  }

  private advance(key: string, next: number): void {
    if (next > (this.next.get(key) ?? 0)) this.next.set(key, next);
    const n = this.next.get(key)!;
    const set = this.waiting.get(key);
    if (set) for (const w of [...set]) if (w.first <= n) w.wake();
  }
}

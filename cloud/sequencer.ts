/**
 * Puts a gateway's pipelined batches back in order before they are applied.
 *
 * A gateway may have several batches in flight (over several HTTP connections), so batch N+1 can
 * reach the cloud before batch N. Instead of answering N+1 with a 409 at once, `admit` holds it until
 * the batch before it has been applied (or `waitMs` passes; then the normal gap rule answers 409 and
 * the gateway resends in order). Nothing here decides what is written: the high-water mark does.
 *
 * State is in memory and per replica; after a restart the first batch of each sequence space learns
 * the position from `initial` (the stored mark, or what the gateway says it has had acknowledged).
 */
export class BatchSequencer {
  private readonly next = new Map<string, number>();
  private readonly waiting = new Map<string, Set<{ first: number; wake: () => void }>>();

  constructor(private readonly waitMs = 2_000) {}

  /** Resolves when the batch starting at `first` is next in line for `key`, or after the wait. */
  async admit(key: string, first: number, initial: () => Promise<number | undefined>): Promise<void> {
    if (!this.next.has(key)) {
      const hw = await initial();
      if (hw !== undefined && !this.next.has(key)) this.next.set(key, hw + 1);
    }
    const expected = this.next.get(key);
    if (expected === undefined || first <= expected) return;
    await new Promise<void>((resolve) => {
      let set = this.waiting.get(key);
      if (!set) this.waiting.set(key, (set = new Set()));
      const w = {
        first,
        wake: () => {
          clearTimeout(timer);
          set!.delete(w);
          resolve();
        },
      };
      const timer = setTimeout(w.wake, this.waitMs);
      timer.unref();
      set.add(w);
    });
  }

  /** A batch of `key` was applied up to `acked`: wake the batch that follows it. */
  applied(key: string, acked: number): void {
    const prev = this.next.get(key) ?? 0;
    if (acked + 1 > prev) this.next.set(key, acked + 1);
    const set = this.waiting.get(key);
    if (!set) return;
    for (const w of [...set]) if (w.first <= acked + 1) w.wake();
    if (set.size === 0) this.waiting.delete(key);
  }
}

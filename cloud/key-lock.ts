/**
 * Locks on sets of keys (device ids): `run(keys, fn)` waits until none of `keys` is held, takes all of
 * them at once, runs `fn`, releases. Taking every key in one step means two callers can never each
 * hold a part of what the other wants (no deadlock). `runExclusive` waits for every holder to finish
 * and keeps new ones out while it runs (rule reloads).
 *
 * Used by the alert service so that evaluate → persist → commit of one device never interleaves with
 * another for the same device (two gateways reporting one device, or the absent-data timer).
 */
export class KeyLock {
  private readonly held = new Set<string>();
  private exclusive = false;
  private exclusiveWaiting = 0;
  private waiters: (() => void)[] = [];

  async run<T>(keys: Iterable<string>, fn: () => Promise<T>): Promise<T> {
    const ks = [...new Set(keys)];
    while (this.exclusive || this.exclusiveWaiting > 0 || ks.some((k) => this.held.has(k))) await this.wait();
    for (const k of ks) this.held.add(k);
    try {
      return await fn();
    } finally {
      for (const k of ks) this.held.delete(k);
      this.wake();
    }
  }

  async runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.exclusiveWaiting++;
    try {
      while (this.exclusive || this.held.size > 0) await this.wait();
    } finally {
      this.exclusiveWaiting--;
    }
    this.exclusive = true;
    try {
      return await fn();
    } finally {
      this.exclusive = false;
      this.wake();
    }
  }

  private wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}

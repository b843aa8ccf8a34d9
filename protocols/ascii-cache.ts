/**
 * Recently seen short ASCII texts, direct-mapped by a hash of their bytes. The payload and batch
 * fast readers (payload-json-fast.ts, batch.ts) meet the same few keys, names and device ids on
 * every reading; handing back the same string saves building it and V8 hashing it again when it is
 * used as a property key.
 */
export class AsciiCache {
  private readonly slots: Array<string | undefined>;
  private readonly mask: number;

  /** `size`: a power of two; texts longer than `maxLength` bytes are built, not cached. */
  constructor(
    size: number,
    private readonly maxLength: number,
  ) {
    this.slots = new Array<string | undefined>(size).fill(undefined);
    this.mask = size - 1;
  }

  /** `src[from, to)` as a string, or undefined when a byte is not ASCII (the caller decodes UTF-8). */
  text(src: Uint8Array, from: number, to: number): string | undefined {
    const n = to - from;
    let h = n;
    for (let i = from; i < to; i++) {
      const b = src[i];
      if (b >= 0x80) return undefined;
      h = (Math.imul(h, 31) + b) | 0;
    }
    if (n > this.maxLength) return latin1(src, from, to);
    const slot = (h ^ (h >>> 9)) & this.mask;
    const hit = this.slots[slot];
    if (hit !== undefined && hit.length === n) {
      let i = 0;
      while (i < n && hit.charCodeAt(i) === src[from + i]) i++;
      if (i === n) return hit;
    }
    const s = latin1(src, from, to);
    this.slots[slot] = s;
    return s;
  }
}

function latin1(src: Uint8Array, from: number, to: number): string {
  return Buffer.prototype.latin1Slice.call(src, from, to) as string;
}

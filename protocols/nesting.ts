/**
 * Nesting depth of a JSON text or a CBOR item, measured on the bytes before any decoder runs.
 *
 * Why: cbor-x decodes recursively, so 60 000 nested arrays in a 64 KiB payload cost a full stack
 * unwind (RangeError) per message; deep input is refused cheaply and with a clear reason instead.
 * Both scanners are iterative, allocate O(depth limit) at most, and look at each byte once. They do
 * not validate: malformed input returns false and is left to the decoder's precise error.
 */

/** True when the JSON text nests arrays/objects deeper than `limit` (strings are skipped). */
export function jsonDepthExceeds(buf: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (inString) {
      if (b === 0x5c) i++; // backslash: skip the escaped byte
      else if (b === 0x22) inString = false;
      continue;
    }
    if (b === 0x22) inString = true;
    else if (b === 0x7b || b === 0x5b) {
      if (++depth > limit) return true;
    } else if (b === 0x7d || b === 0x5d) depth--;
  }
  return false;
}

/**
 * True when the first CBOR data item in `buf` nests arrays, maps, tags or indefinite-length strings
 * deeper than `limit`. A top-level map is depth 1.
 */
export function cborDepthExceeds(buf: Uint8Array, limit: number): boolean {
  // Remaining items of each open container; Infinity for indefinite length (ends with 0xff).
  const open: number[] = [];
  let pos = 0;
  let started = false;
  while (pos < buf.length) {
    while (open.length > 0 && open[open.length - 1] === 0) open.pop();
    if (started && open.length === 0) return false;
    const b = buf[pos++];
    if (b === 0xff) {
      if (open.length > 0 && open[open.length - 1] === Infinity) {
        open.pop();
        continue;
      }
      return false;
    }
    if (open.length > 0) open[open.length - 1]--;
    started = true;
    const major = b >> 5;
    const ai = b & 0x1f;
    let arg: number;
    if (ai < 24) arg = ai;
    else if (ai === 24) arg = buf[pos++];
    else if (ai === 25) {
      arg = (buf[pos] << 8) | buf[pos + 1];
      pos += 2;
    } else if (ai === 26) {
      arg = ((buf[pos] << 24) >>> 0) + (buf[pos + 1] << 16) + (buf[pos + 2] << 8) + buf[pos + 3];
      pos += 4;
    } else if (ai === 27) {
      const hi = ((buf[pos] << 24) >>> 0) + (buf[pos + 1] << 16) + (buf[pos + 2] << 8) + buf[pos + 3];
      const lo = ((buf[pos + 4] << 24) >>> 0) + (buf[pos + 5] << 16) + (buf[pos + 6] << 8) + buf[pos + 7];
      arg = hi * 2 ** 32 + lo;
      pos += 8;
    } else if (ai === 31) arg = -1;
    else return false; // reserved additional info: malformed
    if (pos > buf.length) return false;
    let push: number | undefined;
    switch (major) {
      case 2:
      case 3:
        if (arg === -1) push = Infinity;
        else pos += arg;
        break;
      case 4:
        push = arg === -1 ? Infinity : arg;
        break;
      case 5:
        push = arg === -1 ? Infinity : arg * 2;
        break;
      case 6:
        push = 1;
        break;
      default:
        // 0/1 integers, 7 simple values and floats: their bytes were consumed with the argument.
        break;
    }
    if (push !== undefined) {
      open.push(push);
      if (open.length > limit) return true;
    }
  }
  return false;
}

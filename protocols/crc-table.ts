/** Lookup tables for the reflected, table-driven CRC-32 family (one byte per step). */

/** The 256-entry table of the reflected CRC-32 with polynomial `poly` (reversed form). */
export function crcTable(poly: number): Int32Array {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? poly ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
}

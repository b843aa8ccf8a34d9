/**
 * Just enough of LevelDB's table format (table/format.cc, doc/table_format.md) for fault tests to
 * damage one data block on purpose: the footer, the (snappy-compressed) index block, and the
 * block handles in it. Damage made this way is the kind LevelDB reports as a Corruption error
 * (an unknown block type), not random bytes: flipped bytes inside a block can also decode as a
 * garbage key, and the prebuilt classic-level aborts the process on that (an assertion in
 * leveldb's dbformat.h), which is no use to a test of the gateway's own handling.
 */

/** Snappy raw-format decompression (the block compression LevelDB uses). */
export function snappyDecompress(src: Uint8Array): Buffer {
  const p = { i: 0 };
  const out = Buffer.alloc(varint(src, p));
  let o = 0;
  while (p.i < src.length) {
    const tag = src[p.i++];
    const kind = tag & 3;
    if (kind === 0) {
      let len = tag >> 2;
      if (len >= 60) {
        const bytes = len - 59;
        len = 0;
        for (let k = 0; k < bytes; k++) len |= src[p.i++] << (8 * k);
      }
      len += 1;
      out.set(src.subarray(p.i, p.i + len), o);
      p.i += len;
      o += len;
      continue;
    }
    let len: number;
    let offset: number;
    if (kind === 1) {
      len = ((tag >> 2) & 7) + 4;
      offset = ((tag >> 5) << 8) | src[p.i++];
    } else if (kind === 2) {
      len = (tag >> 2) + 1;
      offset = src[p.i] | (src[p.i + 1] << 8);
      p.i += 2;
    } else {
      len = (tag >> 2) + 1;
      offset = (src[p.i] | (src[p.i + 1] << 8) | (src[p.i + 2] << 16) | (src[p.i + 3] << 24)) >>> 0;
      p.i += 4;
    }
    for (let k = 0; k < len; k++, o++) out[o] = out[o - offset];
  }
  return out;
}

function varint(b: Uint8Array, p: { i: number }): number {
  let r = 0;
  let s = 0;
  let x: number;
  do {
    x = b[p.i++];
    r += (x & 0x7f) * 2 ** s;
    s += 7;
  } while (x & 0x80);
  return r;
}

/** [offset, size] of every data block of a table file, in key order. */
export function dataBlocks(table: Buffer): Array<[number, number]> {
  const footer = table.subarray(table.length - 48);
  if (footer.readUInt32LE(40) !== 0x8b80fb57 || footer.readUInt32LE(44) !== 0xdb477524) throw new Error('not a LevelDB table (bad magic)');
  const p = { i: 0 };
  varint(footer, p); // metaindex handle
  varint(footer, p);
  const idxOff = varint(footer, p);
  const idxSize = varint(footer, p);
  const raw = table.subarray(idxOff, idxOff + idxSize);
  const type = table[idxOff + idxSize];
  const block = type === 1 ? snappyDecompress(raw) : type === 0 ? raw : undefined;
  if (!block) throw new Error(`index block of unknown type ${type}`);
  const restarts = block.readUInt32LE(block.length - 4);
  const end = block.length - 4 - 4 * restarts;
  const q = { i: 0 };
  const out: Array<[number, number]> = [];
  while (q.i < end) {
    varint(block, q); // shared key bytes
    const unshared = varint(block, q);
    const valueLength = varint(block, q);
    q.i += unshared;
    const v = { i: q.i };
    out.push([varint(block, v), varint(block, v)]);
    q.i += valueLength;
  }
  return out;
}

/** Make data block `index` of a table unreadable as LevelDB reports it: an unknown compression type. */
export function damageDataBlock(table: Buffer, index: number): void {
  const [offset, size] = dataBlocks(table)[index];
  table[offset + size] = 0x7f;
}

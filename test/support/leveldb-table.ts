/**
 * Damage one data block of a LevelDB table the way LevelDB reports it (an unknown compression
 * type), for fault tests of the salvage path. Random flipped bytes are tested separately
 * (test/integration/log-damage.test.ts): the log's table check turns those into this.
 */
import { dataBlockHandles } from '../../protocols/leveldb-verify.js';

/** [offset, size] of every data block of a table file, in key order. */
export function dataBlocks(table: Buffer): Array<[number, number]> {
  return dataBlockHandles(table).map((h) => [h.offset, h.size]);
}

/** Make data block `index` of a table unreadable as LevelDB reports it: an unknown compression type. */
export function damageDataBlock(table: Buffer, index: number): void {
  const [offset, size] = dataBlocks(table)[index];
  table[offset + size] = 0x7f;
}

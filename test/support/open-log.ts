/**
 * Child process for fault tests: open the durable log in argv[2] the way the gateway does (table
 * check, salvage), read its whole backlog, print its counters as one JSON line, close. A LevelDB
 * abort (an assertion in the native code) shows as the process dying on SIGABRT instead.
 */
import { DurableLog } from '../../gateway/log.js';

const log = new DurableLog({ dir: process.argv[2], sync: 'never' });
const events: string[] = [];
log.onCorruption = (message) => events.push(message);
await log.open();
let read = 0;
let after = log.ackedSeq;
for (;;) {
  const r = await log.read(after, 5000);
  if (r.records.length === 0) break;
  read += r.records.length;
  after = r.upTo;
}
const { salvaged, lostToCorruption, damagedBlocks, backlogRecords, repairs } = log.stats;
process.stdout.write(`${JSON.stringify({ salvaged, lostToCorruption, damagedBlocks, backlogRecords, repairs, read, events })}\n`);
await log.close();

/**
 * Baseline for the ingest benchmark: bare aedes on TCP with no Sluice pipeline (in-memory
 * persistence, default hooks), in its own process like the gateway. Prints
 * `bare aedes listening on mqtt://HOST:PORT`, and serves the number of publishes it handled at
 * http://HOST:PORT+? — simpler: on each `count` line on stdin it prints `count N`.
 */
import { Aedes } from 'aedes';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

const broker = await Aedes.createBroker();
let published = 0;
broker.on('publish', (_packet, client) => {
  if (client) published++;
});
const server = createServer(broker.handle);
server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`bare aedes listening on mqtt://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}\n`);
});
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'count') process.stdout.write(`count ${published}\n`);
});
process.on('SIGTERM', () => {
  broker.close(() => server.close(() => process.exit(0)));
});

/**
 * Baseline for the ingest and resources benchmarks: bare aedes on TCP with no Sluice pipeline
 * (in-memory persistence, default hooks), in its own process like the gateway. Prints
 * `bare aedes listening on mqtt://HOST:PORT`; on each `count` line on stdin it prints `count N`,
 * the publishes it handled.
 *
 * Keep this file free of TypeScript syntax: run.ts runs it with plain node (`--input-type=module`),
 * as the gateway runs compiled, so no tsx loader weighs on the baseline's CPU and RSS.
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

/**
 * The `sluice` command. Each subcommand lives beside the code it drives and registers itself here.
 */
import { Command } from 'commander';
import { register as registerGateway } from '../gateway/cli.js';
import { register as registerCloud } from '../cloud/cli.js';
import { register as registerQuery } from '../cloud/query-cli.js';
import { register as registerAlerts } from '../cloud/alerts-cli.js';
import { register as registerSim } from '../devices-sim/cli.js';
import { register as registerDemo } from '../deploy/demo.js';

const program = new Command();
program
  .name('sluice')
  .description('Edge-to-cloud telemetry: MQTT devices → durable edge gateway → cloud ingest → InfluxDB')
  .showHelpAfterError()
  .version('0.1.0');

registerGateway(program);
registerCloud(program);
registerSim(program);
registerQuery(program);
registerAlerts(program);
registerDemo(program);

await program.parseAsync(process.argv);

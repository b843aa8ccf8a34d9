/**
 * The `sluice` command. Each subcommand lives beside the code it drives and registers itself here.
 * Only the module of the subcommand being run is loaded (a gateway on a Pi does not carry the cloud's
 * InfluxDB client, alert engine and dashboard in memory); `sluice --help` loads them all.
 */
import { Command } from 'commander';

type Register = (program: Command) => void;
const modules: Record<string, () => Promise<{ register: Register }>> = {
  gateway: async () => {
    // Before aedes and mqtt-packet are loaded: their per-packet debug calls cost the broker dearly.
    (await import('../gateway/quiet-debug.js')).quietDebug();
    return import('../gateway/cli.js');
  },
  cloud: () => import('../cloud/cli.js'),
  sim: () => import('../devices-sim/cli.js'),
  query: () => import('../cloud/query-cli.js'),
  alerts: () => import('../cloud/alerts-cli.js'),
  demo: () => import('../deploy/demo.js'),
};
/** Subcommands registered by another command's module. */
const alias: Record<string, string> = { device: 'gateway' };

const program = new Command();
program
  .name('sluice')
  .description('Edge-to-cloud telemetry: MQTT devices → durable edge gateway → cloud ingest → InfluxDB')
  .showHelpAfterError()
  // Options belong to the command they follow (`sluice gateway status --http …` is the status
  // command's --http, not the gateway's).
  .enablePositionalOptions()
  .version('0.1.0');

const wanted = process.argv[2];
const key = wanted === undefined ? undefined : (alias[wanted] ?? wanted);
const load = key !== undefined && key in modules ? [key] : Object.keys(modules);
for (const name of load) (await modules[name]()).register(program);

await program.parseAsync(process.argv);

/**
 * Standalone entry for the simulator alone: `npx tsx devices-sim/main.ts sim --devices 10 …`.
 * Same command as `sluice sim`, without loading the gateway and cloud modules (the tests spawn it).
 */
import { Command } from 'commander';
import { register } from './cli.js';

const program = new Command().name('sluice').showHelpAfterError();
register(program);
await program.parseAsync(process.argv);

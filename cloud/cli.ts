/**
 * `sluice cloud`: run the cloud ingest/query server (server.ts) from flags and/or a YAML file
 * (config.ts).
 *
 * Contract with scripts and tests:
 * - Configuration and usage errors: one clear line on stderr naming the flag or key, exit code 2.
 * - When ready, exactly one line on stdout: `sluice cloud listening on http://HOST:PORT`.
 *   Logs (pino JSON, one line per event) go to stderr, never stdout.
 * - SIGINT/SIGTERM: stop the server (requests in flight finish), close LevelDB, exit 0.
 *   Failing to start (port taken, data directory locked by another cloud): exit 1.
 */
import { Command, Option } from 'commander';
import { pino } from 'pino';
import { isSluiceError } from '../protocols/errors.js';
import { loadCloudFile, resolveCloudConfig, type CloudFile } from './config.js';
import { CloudServer } from './server.js';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function fail(err: unknown, code: number): never {
  process.stderr.write(`sluice cloud: ${(err as Error).message ?? String(err)}\n`);
  process.exit(code);
}

export function register(program: Command): void {
  program
    .command('cloud')
    .description('run the cloud tier: authenticated batch ingest → InfluxDB, dedup/gap tracking, query API')
    .option('--config <file>', 'YAML config file; keys mirror the flags, flags override it')
    .option('--listen <host:port>', 'address to serve on (default 127.0.0.1:8787; port 0 picks a free port)')
    .option('--data <dir>', "directory for the cloud's own state (per-gateway high-water marks)")
    .option('--gateway-token <gw=token>', 'a gateway id and its bearer token; repeat for each gateway', collect)
    .option('--influx <url>', 'InfluxDB base URL (default http://127.0.0.1:8086)')
    .addOption(new Option('--influx-api <n>', 'InfluxDB write API: 1 (/write) or 2 (/api/v2/write, token)'))
    .option('--influx-db <name>', 'database (API 1, default sluice)')
    .option('--influx-user <user>', 'user (API 1)')
    .option('--influx-password <password>', 'password (API 1; or env SLUICE_INFLUX_PASSWORD)')
    .option('--influx-org <org>', 'organisation (API 2)')
    .option('--influx-bucket <bucket>', 'bucket (API 2)')
    .option('--influx-token <token>', 'token (API 2; or env SLUICE_INFLUX_TOKEN)')
    .addOption(
      new Option('--log-level <level>', 'log level (or env SLUICE_LOG_LEVEL)')
        .choices(['trace', 'debug', 'info', 'warn', 'error', 'silent'])
        .default(process.env.SLUICE_LOG_LEVEL ?? 'info'),
    )
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .action(async (opts) => {
      let config;
      try {
        const file: CloudFile = opts.config ? await loadCloudFile(opts.config) : {};
        config = resolveCloudConfig(opts, file);
      } catch (err) {
        fail(err, isSluiceError(err, 'SLUICE_BAD_CONFIG') ? 2 : 1);
      }
      const logger = pino({ name: 'sluice-cloud', level: opts.logLevel }, pino.destination({ dest: 2, sync: true }));
      const server = new CloudServer({ ...config, logger });
      let url: string;
      try {
        ({ url } = await server.start());
      } catch (err) {
        fail(err, 1);
      }
      process.stdout.write(`sluice cloud listening on ${url}\n`);
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'stopping');
        try {
          await server.stop();
          process.exit(0);
        } catch (err) {
          logger.error({ err: (err as Error).message }, 'unclean stop');
          process.exit(1);
        }
      };
      process.on('SIGINT', () => void stop('SIGINT'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
    });
}

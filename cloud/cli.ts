/**
 * `sluice cloud`: run the cloud ingest/query server (server.ts) from flags and/or a YAML file
 * (config.ts).
 *
 * Contract with scripts and tests:
 * - Configuration and usage errors: one clear line on stderr naming the flag or key, exit code 2.
 * - When ready, exactly one line on stdout: `sluice cloud listening on http://HOST:PORT`.
 *   Logs (pino JSON, one line per event) go to stderr, never stdout.
 * - SIGINT/SIGTERM: stop the server (requests in flight finish), close LevelDB, exit 0; a stop that
 *   takes longer than STOP_TIMEOUT_MS exits 1 (systemd's TimeoutStopSec is set above it).
 *   Failing to start (port taken, data directory locked by another cloud): exit 1.
 * - SIGHUP: re-read the config file; the log level is applied, other changes need a restart. A bad
 *   file is logged and changes nothing.
 * - `--check-config`: validate, print `configuration ok`, exit 0 (or 2 naming the key).
 */
import { Command, Option } from 'commander';
import { pino } from 'pino';
import { isSluiceError } from '../protocols/errors.js';
import { CLOUD_LOG_LEVELS, loadCloudFile, resolveCloudConfig, resolveCloudLogLevel, type CloudFile } from './config.js';
import { addCloudSecurityOptions, registerHashToken } from './auth-cli.js';
import { CloudServer } from './server.js';

/** Longest graceful stop; the systemd unit's TimeoutStopSec is above it. */
export const STOP_TIMEOUT_MS = 15_000;

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function fail(err: unknown, code: number): never {
  process.stderr.write(`sluice cloud: ${(err as Error).message ?? String(err)}\n`);
  process.exit(code);
}

export function register(program: Command): void {
  // Security flags (hashed tokens, read tokens, HTTPS, limits) and `hash-token`: auth-cli.ts.
  const cloud = addCloudSecurityOptions(program.command('cloud'));
  registerHashToken(cloud);
  cloud
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
    .option('--rules <file>', 'alert rules YAML file; reloaded when it changes and on SIGHUP')
    .addOption(new Option('--log-level <level>', 'log level (default info; or env SLUICE_LOG_LEVEL, or log-level in the file)').choices(CLOUD_LOG_LEVELS))
    .option('--check-config', 'validate the configuration and exit')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .action(async (opts) => {
      let config;
      let level: string;
      const load = async () => {
        const file: CloudFile = opts.config ? await loadCloudFile(opts.config) : {};
        return { config: resolveCloudConfig(opts, file), level: resolveCloudLogLevel(opts.logLevel, file) };
      };
      try {
        ({ config, level } = await load());
      } catch (err) {
        fail(err, isSluiceError(err, 'SLUICE_BAD_CONFIG') ? 2 : 1);
      }
      if (opts.checkConfig) {
        process.stdout.write('configuration ok\n');
        return;
      }
      const logger = pino({ name: 'sluice-cloud', level }, pino.destination({ dest: 2, sync: true }));
      const server = new CloudServer({ ...config, logger });
      let url: string;
      try {
        ({ url } = await server.start());
      } catch (err) {
        // An invalid alert rules file is a configuration error like any other (exit 2).
        fail(err, isSluiceError(err, 'SLUICE_BAD_CONFIG') ? 2 : 1);
      }
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'stopping');
        setTimeout(() => {
          logger.error({ timeoutMs: STOP_TIMEOUT_MS }, 'unclean stop: timed out');
          process.exit(1);
        }, STOP_TIMEOUT_MS).unref();
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
      // SIGHUP (systemctl reload): the alert rules, then the configuration (log level).
      process.on('SIGHUP', () => {
        logger.info({ signal: 'SIGHUP' }, 'reloading alert rules');
        void server.reloadRules().catch((err) => logger.error({ err: (err as Error).message }, 'rules reload failed'));
        if (stopping) return;
        load().then(
          (next) => {
            logger.level = next.level;
            logger.info({ logLevel: next.level }, 'configuration reloaded (log level applied; other changes need a restart)');
          },
          (err) => logger.error({ err: (err as Error).message }, 'reload refused: configuration unchanged'),
        );
      });
      // The ready line only once the signal handlers are in place: a supervisor may signal right after it.
      process.stdout.write(`sluice cloud listening on ${url}\n`);
    });
}

/**
 * `sluice gateway …`: run the gateway, check its config, show its status, list dead letters.
 */
import { Command, Option } from 'commander';
import pino from 'pino';
import { join } from 'node:path';
import v8 from 'node:v8';
import { isSluiceError } from '../protocols/errors.js';
import { loadGatewayConfig } from './config.js';
import { Gateway } from './gateway.js';
import { DurableLog } from './log.js';
import { registerDeviceCommands } from './registry-cli.js';
import { backlogTrend } from './rates.js';

function fail(err: unknown): never {
  process.stderr.write(`sluice gateway: ${(err as Error).message}\n`);
  process.exit(isSluiceError(err, 'SLUICE_BAD_CONFIG') ? 2 : 1);
}

/**
 * Old-generation collections at 1.3 × the live heap instead of V8's default of up to ~4 ×: under
 * load, publishes waiting for their commit live long enough to be promoted, and the default lets
 * that garbage grow the heap (and the Pi's RSS) to ~200 MB before it is collected. Measured with
 * `npm run bench` (gateway_rss_mb.backlog_1m). The flag is read at each collection, so setting it
 * here works; `node --heap-growing-percent=N` on the command line wins. (It cannot go in
 * NODE_OPTIONS, which refuses it.)
 */
function tuneHeap(): void {
  if (process.execArgv.some((a) => a.startsWith('--heap-growing-percent'))) return;
  v8.setFlagsFromString('--heap-growing-percent=30');
}

export function register(program: Command): void {
  registerDeviceCommands(program);
  const gw = program
    .command('gateway')
    .description('run the edge gateway: MQTT broker → durable log → cloud forwarder')
    .option('--config <file>', 'YAML config file (flags override it)')
    .option('--id <id>', 'gateway id at the cloud')
    .option('--mqtt <host:port>', 'MQTT listen address (default 0.0.0.0:1883)')
    .option('--http <host:port>', 'HTTP listen address for /metrics, /healthz, /readyz, /status')
    .option('--data <dir>', 'data directory (durable log, window state)')
    .option('--cloud <url>', 'cloud ingest base URL')
    .option('--cloud-token <token>', 'bearer token of this gateway at the cloud (or env SLUICE_CLOUD_TOKEN)')
    .option('--allow-anonymous', 'accept MQTT clients without credentials')
    .option('--registry <file>', 'device registry (sluice device add): MQTT username = device id, password = its secret')
    .option('--mqtts <host:port>', 'MQTT over TLS listen address (needs --tls-cert, --tls-key)')
    .option('--tls-cert <file>', 'PEM server certificate for --mqtts')
    .option('--tls-key <file>', 'PEM private key for --mqtts')
    .option('--tls-ca <file>', 'CA that signs client certificates (device id = certificate CN)')
    .addOption(new Option('--tls-client-auth <mode>', 'client certificates on --mqtts').choices(['none', 'optional', 'require']))
    .option('--cloud-ca <file>', "CA bundle to verify the cloud's HTTPS certificate with")
    .addOption(new Option('--sync <policy>', 'fsync policy of the log').choices(['always', 'interval', 'never']))
    .option('--quota <size>', 'disk quota of the log, e.g. 512MiB')
    .addOption(new Option('--when-full <policy>', 'what to do when the quota is reached').choices(['block', 'drop-oldest']))
    .option('--windows <list>', 'event-time windows, e.g. "1m" or "1m,5m/1m"; "off" to disable (default 1m)')
    .option('--lateness <duration>', 'allowed lateness of readings in event time (default 10s)')
    .option('--grace <duration>', 'after a window closed, late readings within this re-emit it revised (default 60s)')
    .option('--max-backoff <duration>', 'longest wait between retries to the cloud, also the circuit-breaker probe interval (default 30s)')
    .option('--check-config', 'validate the configuration and exit')
    .option('--log-level <level>', 'log level: trace, debug, info, warn, error (default info; or env SLUICE_LOG_LEVEL, or logLevel in the file)')
    .action(async (opts) => {
      tuneHeap();
      let config;
      const load = () =>
        loadGatewayConfig(opts.config, {
          id: opts.id,
          mqtt: opts.mqtt,
          http: opts.http,
          data: opts.data,
          cloud: opts.cloud,
          cloudToken: opts.cloudToken,
          allowAnonymous: opts.allowAnonymous,
          registry: opts.registry,
          mqtts: opts.mqtts,
          'tls.cert': opts.tlsCert,
          'tls.key': opts.tlsKey,
          'tls.ca': opts.tlsCa,
          'tls.clientAuth': opts.tlsClientAuth,
          cloudCa: opts.cloudCa,
          'log.sync': opts.sync,
          'log.quota': opts.quota,
          'log.whenFull': opts.whenFull,
          'forward.maxBackoff': opts.maxBackoff,
          'windows.specs': opts.windows === undefined ? undefined : opts.windows === 'off' ? [] : String(opts.windows).split(',').map((x: string) => x.trim()),
          'windows.allowedLateness': opts.lateness,
          'windows.grace': opts.grace,
          logLevel: opts.logLevel,
        });
      try {
        config = load();
      } catch (err) {
        fail(err);
      }
      if (opts.checkConfig) {
        process.stdout.write('configuration ok\n');
        return;
      }
      const logger = pino({ name: 'sluice-gateway', level: config.logLevel ?? 'info' }, pino.destination(2));
      const gateway = new Gateway({ ...config, logger });
      let addrs;
      try {
        addrs = await gateway.start();
      } catch (err) {
        fail(err);
      }
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'stopping');
        try {
          await gateway.stop();
          logger.info('stopped cleanly');
          process.exit(0);
        } catch (err) {
          logger.error({ err: (err as Error).message }, 'unclean stop');
          process.exit(1);
        }
      };
      process.on('SIGINT', () => void stop('SIGINT'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
      // SIGHUP (systemctl reload): re-read the file and environment; a bad file changes nothing.
      process.on('SIGHUP', () => {
        if (stopping) return;
        try {
          gateway.reload(load());
        } catch (err) {
          logger.error({ err: (err as Error).message }, 'reload refused: configuration unchanged');
        }
      });
      // The ready line only once the signal handlers are in place: a supervisor may signal right after it.
      // The MQTTS address goes last, so parsers of the older line (mqtt, then http) keep working.
      const mqtts = gateway.broker.tlsUrl ? ` mqtts ${gateway.broker.tlsUrl}` : '';
      process.stdout.write(`sluice gateway ${config.id} listening on ${addrs.mqtt}${addrs.http ? ` http ${addrs.http}` : ''}${mqtts}\n`);
    });

  gw.command('status')
    .description("print a running gateway's counters (from its /status endpoint)")
    .requiredOption('--http <url>', 'the gateway HTTP address, e.g. http://127.0.0.1:9100')
    .option('--json', 'print the raw JSON')
    .action(async (opts) => {
      const base = opts.http.startsWith('http') ? opts.http : `http://${opts.http}`;
      const res = await fetch(new URL('/status', base)).catch((err) => fail(new Error(`cannot reach ${base}: ${err.message}`)));
      const st: any = await res.json();
      if (opts.json) return void process.stdout.write(`${JSON.stringify(st, null, 2)}\n`);
      const age = st.oldestUnackedTs ? `${((Date.now() - st.oldestUnackedTs) / 1000).toFixed(1)}s` : '-';
      const rows: Array<[string, string | number]> = [
        ['gateway', `${st.id} (incarnation ${st.incarnation})`],
        ['connected clients', st.broker.connected],
        ['received', st.ingest.received],
        ['committed', st.ingest.committed],
        ['group commits', groupCommits(st.log)],
        ['dropped', JSON.stringify({ ...st.ingest.dropped, ...st.broker.dropped, evicted_quota: st.log.evicted })],
        ['refused', JSON.stringify(st.broker.refused ?? {})],
        ['forwarded', st.forwarder.recordsForwarded],
        ['acked seq / last seq', `${st.log.cursor} / ${st.log.nextSeq - 1}`],
        ['backlog', `${st.log.backlogRecords} records, ${st.log.backlogBytes} bytes, oldest ${age}${backlogTrend(st.log.backlogRecords, st.rates, st.drainEtaSec)}`],
        ['rates', st.rates ? `committed ${st.rates.committedPerSec}/s, forwarded ${st.rates.forwardedPerSec}/s (last ${st.rates.overSec} s)` : '- (measured after the first second)'],
        ['quarantined', st.log.quarantined],
        // Only after a start on a log damaged on disk (log.ts, protocols/leveldb-verify.ts).
        ...(st.log.damagedBlocks || st.log.repairs || st.log.salvaged || st.log.lostToCorruption || st.log.walBytesDropped
          ? ([['disk damage at start', `${st.log.damagedBlocks ?? 0} damaged blocks, ${st.log.repairs ?? 0} repairs, ${st.log.walBytesDropped ?? 0} write-ahead log bytes skipped, ${st.log.salvaged} salvaged, ${st.log.lostToCorruption} lost`]] as Array<[string, string]>)
          : []),
        ['retries', st.forwarder.retries],
        ['circuit', st.forwarder.circuit + (st.forwarder.lastError ? ` (last error: ${st.forwarder.lastError})` : '')],
      ];
      for (const [k, v] of rows) process.stdout.write(`${k.padEnd(22)} ${v}\n`);
    });

  gw.command('dead-letter')
    .description('list quarantined log records and rejected payloads kept on disk (gateway must be stopped)')
    .requiredOption('--data <dir>', 'gateway data directory')
    .option('--limit <n>', 'most entries per area', '100')
    .option('--json', 'one JSON object per line')
    .action(async (opts) => {
      const log = new DurableLog({ dir: join(opts.data, 'log') });
      try {
        await log.open();
      } catch (err) {
        fail(new Error(`cannot open the log in ${opts.data} (is the gateway still running?): ${(err as Error).message}`));
      }
      for (const area of ['quarantine', 'dead-letter'] as const) {
        for await (const { id, entry } of log.listArea(area, Number(opts.limit))) {
          const e = { area, id, ...entry };
          if (e.payload instanceof Uint8Array) e.payload = Buffer.from(e.payload).toString('utf8');
          if (e.value instanceof Uint8Array) e.value = Buffer.from(e.value).toString('hex');
          if (opts.json) process.stdout.write(`${JSON.stringify(e)}\n`);
          else process.stdout.write(`${area}\t#${id}\t${new Date(e.at).toISOString()}\t${e.topic ?? `seq ${id}`}\t${e.reason}\n`);
        }
      }
      await log.close();
    });
}

/** `1234 (writes: last 0.4 ms, mean 0.6 ms, slowest 12.5 ms)`: how long PUBACKs wait for the disk (a write includes its fsync under sync: always). */
export function groupCommits(log: { groupCommits: number; commitWriteMsLast?: number; commitWriteMsMax?: number; commitWriteMsTotal?: number; slowWrites?: number }): string {
  if (!log.groupCommits || log.commitWriteMsTotal === undefined) return String(log.groupCommits ?? 0);
  const ms = (x: number) => `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`;
  const slow = log.slowWrites ? `, ${log.slowWrites} slow (log.slowWrite)` : '';
  return `${log.groupCommits} (writes: last ${ms(log.commitWriteMsLast ?? 0)}, mean ${ms(log.commitWriteMsTotal / log.groupCommits)}, slowest ${ms(log.commitWriteMsMax ?? 0)}${slow})`;
}

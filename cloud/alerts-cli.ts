/**
 * `sluice alerts`: list current (and with --state all, past) alerts of a running cloud
 * (GET /api/v1/alerts) as an aligned table, or with --json the API's JSON unchanged.
 *
 * Exit codes: 0 ok (also when there are no alerts); 1 the cloud answered with an error or could not be
 * reached (the message names the status, the error code and the cloud's reason); 2 usage errors.
 */
import { fail, getJson } from './read-client.js';
import { Command, Option } from 'commander';
import { ALERT_STATES, type AlertView } from './alert-history.js';

function iso(t: number | undefined): string {
  return t === undefined ? '-' : new Date(t).toISOString().replace('.000Z', 'Z');
}

function num(v: number | undefined): string {
  return v === undefined ? '-' : String(Math.round(v * 1000) / 1000);
}

/** The table `sluice alerts` prints. */
export function formatAlertsTable(alerts: AlertView[]): string {
  if (alerts.length === 0) return 'no alerts\n';
  const head = ['STATE', 'SEVERITY', 'RULE', 'DEVICE', 'VALUE', 'THRESHOLD', 'SINCE', 'RESOLVED', 'MESSAGE'];
  const rows = alerts.map((a) => [a.state, a.severity, a.rule, a.device, num(a.value), num(a.threshold), iso(a.firedAt ?? a.since), iso(a.resolvedAt), a.message ?? '']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  const firing = alerts.filter((a) => a.state === 'firing').length;
  return `${[line(head), ...rows.map(line)].join('\n')}\n${alerts.length} alert${alerts.length === 1 ? '' : 's'}, ${firing} firing\n`;
}

export function register(program: Command): void {
  program
    .command('alerts')
    .description('list the alerts of a running cloud: firing now, or all with past ones')
    .requiredOption('--cloud <url>', 'cloud base URL, e.g. http://127.0.0.1:8787')
    .addOption(new Option('--state <state>', 'which alerts').choices([...ALERT_STATES]).default('firing'))
    .option('--device <id>', 'only this device')
    .option('--rule <id>', 'only this rule')
    .option('--from <time>', 'how far back resolved alerts go (ms epoch, ISO date, -7d)', '-7d')
    .option('--limit <n>', 'most alerts listed', '100')
    .option('--json', 'print the JSON response')
    .option('--token <token>', 'bearer token, if the cloud requires one for reads (or env SLUICE_QUERY_TOKEN)')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .action(async (opts) => {
      const { url, body, text } = await getJson('alerts', opts.cloud, '/api/v1/alerts', { state: opts.state, device: opts.device, rule: opts.rule, from: opts.from, limit: opts.limit }, opts.token);
      if (!body || !Array.isArray(body.alerts)) fail('alerts', `unexpected response from ${url.origin}: ${text.slice(0, 200)}`);
      process.stdout.write(opts.json ? `${JSON.stringify(body, null, 2)}\n` : formatAlertsTable(body.alerts));
    });
}

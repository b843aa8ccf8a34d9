/**
 * `sluice query`: read one device's metric from a running cloud (GET /api/v1/series) and print it as
 * an aligned table (ISO time, value) or, with --json, the API's JSON unchanged.
 *
 * Exit codes: 0 ok (also when there are no points); 1 the cloud answered with an error or could not be
 * reached (the message names the status, the error code and the cloud's reason); 2 usage errors.
 */
import { fail, getJson } from './read-client.js';
import { Command } from 'commander';

export interface SeriesResponse {
  device: string;
  metric: string;
  every?: number;
  fn?: string;
  window?: string;
  points: { t: number; v: number | boolean }[];
}

/** 300000 → "5m": the largest unit that divides the duration exactly. */
export function formatDurationMs(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** The table `sluice query` prints. */
export function formatSeriesTable(s: SeriesResponse): string {
  const every = s.every ? ` every ${formatDurationMs(s.every)}` : '';
  const how = s.window !== undefined ? ` (window ${s.window}, ${s.fn ?? 'mean'}${every})` : s.every ? ` (${s.fn}${every})` : '';
  const lines = [`${s.device} ${s.metric}${how}`];
  if (s.points.length === 0) return `${lines[0]}\nno points\n`;
  // Means of floats carry binary noise (22.902000000000005): 10 significant digits are plenty.
  const fmt = (v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? String(Number(v.toPrecision(10))) : String(v));
  const rows = s.points.map((p) => [new Date(p.t).toISOString(), fmt(p.v)]);
  const w = Math.max(4, ...rows.map((r) => r[0].length));
  lines.push(`${'time'.padEnd(w)}  value`);
  for (const [t, v] of rows) lines.push(`${t.padEnd(w)}  ${v}`);
  lines.push(`${s.points.length} point${s.points.length === 1 ? '' : 's'}`);
  return `${lines.join('\n')}\n`;
}

export function register(program: Command): void {
  program
    .command('query')
    .description("print a device's metric over time from a running cloud")
    .requiredOption('--cloud <url>', 'cloud base URL, e.g. http://127.0.0.1:8787')
    .requiredOption('--device <id>', 'device id')
    .requiredOption('--metric <name>', 'metric name')
    .option('--from <time>', 'start: ms epoch, ISO date, -1h, now', '-1h')
    .option('--to <time>', 'end: ms epoch, ISO date, -5m, now', 'now')
    .option('--every <duration>', 'bucket size, e.g. 1m (GROUP BY time)')
    .option('--fn <fn>', 'bucket function: mean, min, max, last, count, sum (default mean)')
    .option('--window <name>', "read the gateway's window aggregates, e.g. 1m")
    .option('--json', 'print the JSON response')
    .option('--token <token>', 'bearer token, if the cloud requires one for reads (or env SLUICE_QUERY_TOKEN)')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .action(async (opts) => {
      const { url, body, text } = await getJson('query', opts.cloud, '/api/v1/series', {
        device: opts.device,
        metric: opts.metric,
        from: opts.from,
        to: opts.to,
        every: opts.every,
        fn: opts.fn,
        window: opts.window,
      }, opts.token);
      if (!body || !Array.isArray(body.points)) fail('query', `unexpected response from ${url.origin}: ${text.slice(0, 200)}`);
      process.stdout.write(opts.json ? `${JSON.stringify(body, null, 2)}\n` : formatSeriesTable(body));
    });
}

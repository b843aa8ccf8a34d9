/**
 * `sluice cloud` configuration: command-line flags, an optional YAML file whose keys mirror the flags,
 * and two environment variables for secrets. Precedence: flag > environment > file > default.
 *
 *   listen           HOST:PORT to serve on (default 127.0.0.1:8787; port 0 picks a free port)
 *   data             directory for the cloud's state (high-water marks); required
 *   gateway-token    GW=TOKEN, repeatable (file: a list of "GW=TOKEN" or a map GW: TOKEN); at least one
 *   influx           InfluxDB base URL (default http://127.0.0.1:8086)
 *   influx-api       1 (InfluxDB 1.x /write) or 2 (/api/v2/write with a token); default 1
 *   influx-db        database, API 1 (default "sluice")
 *   influx-user      user, API 1 (optional)
 *   influx-password  password, API 1 (or env SLUICE_INFLUX_PASSWORD)
 *   influx-org       organisation, API 2
 *   influx-bucket    bucket, API 2
 *   influx-token     token, API 2 (or env SLUICE_INFLUX_TOKEN)
 *   rules            alert rules YAML file (alert-rules.ts); reloaded on change and on SIGHUP
 *   log-level        trace|debug|info|warn|error|silent (or env SLUICE_LOG_LEVEL; reloaded on SIGHUP)
 *
 * Environment (secrets, so they need not sit in the file or on the command line, e.g. a systemd
 * EnvironmentFile): SLUICE_GATEWAY_TOKENS "GW=TOKEN GW2=TOKEN2" (space, comma or newline separated;
 * merged over the file's, under the flags'), SLUICE_INFLUX_PASSWORD, SLUICE_INFLUX_TOKEN, SLUICE_LOG_LEVEL.
 * deploy/cloud.sample.yaml is the commented sample; a test loads it through this loader.
 *
 * Every problem is a SluiceError('SLUICE_BAD_CONFIG') whose message names the flag or file key;
 * unknown file keys are refused by name.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { GATEWAY_ID_RE } from '../protocols/batch.js';
import { SluiceError } from '../protocols/errors.js';
import { parseHostPort } from '../protocols/units.js';
import { CLOUD_SECURITY_FILE_KEYS, resolveCloudSecurity, type CloudSecurityConfig, type CloudSecurityFlags } from './auth-config.js';
import type { InfluxConfig } from './influx-common.js';

export const DEFAULT_LISTEN = '127.0.0.1:8787';
export const DEFAULT_INFLUX_URL = 'http://127.0.0.1:8086';
export const DEFAULT_INFLUX_DB = 'sluice';

/** The flags as commander hands them over (all optional strings). Security flags: auth-config.ts. */
export interface CloudFlags extends CloudSecurityFlags {
  listen?: string;
  data?: string;
  gatewayToken?: string[];
  influx?: string;
  influxApi?: string;
  influxDb?: string;
  influxUser?: string;
  influxPassword?: string;
  influxOrg?: string;
  influxBucket?: string;
  influxToken?: string;
  rules?: string;
}

const str = z.string().min(1);
export const CloudFileSchema = z.strictObject({
  listen: str.optional(),
  data: str.optional(),
  'gateway-token': z.union([z.array(str), z.record(z.string(), z.string())]).optional(),
  influx: str.optional(),
  'influx-api': z.union([z.literal(1), z.literal(2), z.literal('1'), z.literal('2')]).optional(),
  'influx-db': str.optional(),
  'influx-user': str.optional(),
  'influx-password': z.string().optional(),
  'influx-org': str.optional(),
  'influx-bucket': str.optional(),
  'influx-token': str.optional(),
  'log-level': z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).optional(),
  rules: str.optional(),
  ...CLOUD_SECURITY_FILE_KEYS,
});
export type CloudFile = z.infer<typeof CloudFileSchema>;

/** What CloudServer needs from the configuration (the rest of CloudServerConfig has defaults). */
export interface ResolvedCloudConfig extends CloudSecurityConfig {
  listen: { host: string; port: number };
  dataDir: string;
  gatewayTokens: Record<string, string>;
  influx: InfluxConfig;
  /** Alert rules file, when configured. */
  rulesFile?: string;
}

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_CONFIG', message);
}

/** Parse and check a YAML config file; `file` names it in errors. */
export function parseCloudFile(text: string, file: string): CloudFile {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw bad(`${file}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  const r = CloudFileSchema.safeParse(doc);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (issue.code === 'unrecognized_keys') throw bad(`${file}: unknown key "${issue.keys[0]}" (keys mirror the flags: ${Object.keys(CloudFileSchema.shape).join(', ')})`);
  const key = issue.path.join('.') || '(top level)';
  throw bad(`${file}: key "${key}": ${issue.message}`);
}

export async function loadCloudFile(path: string): Promise<CloudFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw bad(`--config ${path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseCloudFile(text, `--config ${path}`);
}

function parseTokenPairs(pairs: string[], where: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq < 0) throw bad(`${where}: expected GW=TOKEN (the value has no "=")`);
    addToken(out, p.slice(0, eq), p.slice(eq + 1), where);
  }
  return out;
}

function addToken(out: Record<string, string>, gw: string, token: string, where: string): void {
  if (!GATEWAY_ID_RE.test(gw)) throw bad(`${where}: gateway id "${gw.slice(0, 70)}" must match [A-Za-z0-9_.-]{1,64}`);
  if (token.length === 0) throw bad(`${where}: the token of gateway "${gw}" is empty`);
  out[gw] = token;
}

/** Merge flags, environment and file into a checked configuration. */
export function resolveCloudConfig(flags: CloudFlags, file: CloudFile = {}, env: NodeJS.ProcessEnv = process.env): ResolvedCloudConfig {
  const listenIn = flags.listen ?? file.listen ?? DEFAULT_LISTEN;
  const listenWhere = flags.listen !== undefined ? '--listen' : 'listen';
  let listen: { host: string; port: number };
  try {
    listen = parseHostPort(listenIn, listenWhere);
  } catch (err) {
    throw bad((err as Error).message);
  }

  const dataDir = flags.data ?? file.data;
  if (!dataDir) throw bad('--data DIR is required (or "data" in the config file)');

  const gatewayTokens: Record<string, string> = {};
  const ft = file['gateway-token'];
  if (Array.isArray(ft)) Object.assign(gatewayTokens, parseTokenPairs(ft, 'gateway-token'));
  else if (ft) for (const [gw, t] of Object.entries(ft)) addToken(gatewayTokens, gw, t, 'gateway-token');
  const envTokens = env.SLUICE_GATEWAY_TOKENS?.split(/[\s,]+/).filter(Boolean) ?? [];
  Object.assign(gatewayTokens, parseTokenPairs(envTokens, 'SLUICE_GATEWAY_TOKENS'));
  Object.assign(gatewayTokens, parseTokenPairs(flags.gatewayToken ?? [], '--gateway-token'));
  const security = resolveCloudSecurity(flags, file, env);
  if (Object.keys(gatewayTokens).length === 0 && !security.gatewayTokenHashes) throw bad('at least one --gateway-token GW=TOKEN is required (or "gateway-token" in the config file, or env SLUICE_GATEWAY_TOKENS)');
  const seen = new Map<string, string>();
  for (const [gw, t] of Object.entries(gatewayTokens)) {
    const other = seen.get(t);
    if (other) throw bad(`--gateway-token: gateways "${other}" and "${gw}" share one token; each gateway needs its own`);
    seen.set(t, gw);
  }

  const url = flags.influx ?? file.influx ?? DEFAULT_INFLUX_URL;
  const urlWhere = flags.influx !== undefined ? '--influx' : 'influx';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw bad(`${urlWhere}: "${url}" is not a URL (example: http://127.0.0.1:8086)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw bad(`${urlWhere}: "${url}" must be an http:// or https:// URL`);
  if (parsed.username || parsed.password) throw bad(`${urlWhere}: put credentials in --influx-user/--influx-password or --influx-token, not in the URL`);

  const apiIn = flags.influxApi ?? (file['influx-api'] !== undefined ? String(file['influx-api']) : '1');
  if (apiIn !== '1' && apiIn !== '2') throw bad(`--influx-api must be 1 or 2, not "${apiIn.slice(0, 20)}"`);

  const pick = <K extends keyof CloudFlags & string>(flag: K, key: keyof CloudFile): string | undefined =>
    (flags[flag] as string | undefined) ?? (file[key] as string | undefined);

  let influx: InfluxConfig;
  if (apiIn === '1') {
    for (const [f, k] of [['influxOrg', 'influx-org'], ['influxBucket', 'influx-bucket'], ['influxToken', 'influx-token']] as const) {
      if (pick(f, k) !== undefined) throw bad(`--${k} ("${k}" in the config file) only applies to --influx-api 2`);
    }
    const db = pick('influxDb', 'influx-db') ?? DEFAULT_INFLUX_DB;
    const user = pick('influxUser', 'influx-user');
    const password = flags.influxPassword ?? env.SLUICE_INFLUX_PASSWORD ?? file['influx-password'];
    if (password !== undefined && user === undefined) throw bad('--influx-password needs --influx-user');
    influx = { api: 1, url, db, ...(user !== undefined ? { user, password: password ?? '' } : {}) };
  } else {
    for (const [f, k] of [['influxDb', 'influx-db'], ['influxUser', 'influx-user'], ['influxPassword', 'influx-password']] as const) {
      if (pick(f, k) !== undefined) throw bad(`--${k} ("${k}" in the config file) only applies to --influx-api 1`);
    }
    const org = pick('influxOrg', 'influx-org');
    const bucket = pick('influxBucket', 'influx-bucket');
    const token = flags.influxToken ?? env.SLUICE_INFLUX_TOKEN ?? file['influx-token'];
    if (!org) throw bad('--influx-org is required with --influx-api 2');
    if (!bucket) throw bad('--influx-bucket is required with --influx-api 2');
    if (!token) throw bad('--influx-token (or env SLUICE_INFLUX_TOKEN) is required with --influx-api 2');
    influx = { api: 2, url, org, bucket, token };
  }
  const rulesFile = flags.rules ?? file.rules;
  return { listen, dataDir, gatewayTokens, influx, ...security, ...(rulesFile !== undefined ? { rulesFile } : {}) };
}

export const CLOUD_LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;

/** Log level: flag > env SLUICE_LOG_LEVEL > file "log-level" > info. */
export function resolveCloudLogLevel(flag: string | undefined, file: CloudFile = {}, env: NodeJS.ProcessEnv = process.env): string {
  const [value, where] =
    flag !== undefined ? [flag, '--log-level'] : env.SLUICE_LOG_LEVEL ? [env.SLUICE_LOG_LEVEL, 'SLUICE_LOG_LEVEL'] : [file['log-level'] ?? 'info', 'log-level'];
  if (!(CLOUD_LOG_LEVELS as readonly string[]).includes(value)) throw bad(`${where}: "${value.slice(0, 20)}" is not one of ${CLOUD_LOG_LEVELS.join(', ')}`);
  return value;
}

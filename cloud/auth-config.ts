/**
 * The security part of `sluice cloud`'s configuration: hashed gateway tokens, read tokens, HTTPS and
 * connection limits. Flags and YAML keys (the keys mirror the flags):
 *
 *   gateway-token-hash  GW=scrypt$…, repeatable (file: list of "GW=HASH" or map GW: HASH)
 *   tokens-file         YAML file { gateways: { GW: scrypt$… }, read: [scrypt$…] } (hashes only)
 *   read-token          a token for GET /api/v1/series and /api/v1/devices, repeatable (env SLUICE_READ_TOKENS)
 *   read-token-hash     scrypt hash of a read token, repeatable
 *   tls-cert, tls-key   serve HTTPS with this PEM certificate chain and key
 *   headers-timeout     time to send the request headers (default 10s): slowloris guard
 *   request-timeout     time to send a whole request (default 120s)
 *   max-connections     most open sockets (default 1024)
 *   max-body            largest batch body (default 16MiB)
 *
 * With any read token configured, reads need one; without, reads are open (as before). Secrets are
 * never echoed in errors: messages name the flag or key and the gateway id only.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { GATEWAY_ID_RE } from '../protocols/batch.js';
import { SluiceError } from '../protocols/errors.js';
import { isSecretHash, parseSecretHash } from '../protocols/secret-hash.js';
import { parseDuration, parseSize } from '../protocols/units.js';
import type { CloudTlsConfig } from './tls.js';

export interface CloudSecurityFlags {
  gatewayTokenHash?: string[];
  tokensFile?: string;
  readToken?: string[];
  readTokenHash?: string[];
  tlsCert?: string;
  tlsKey?: string;
  headersTimeout?: string;
  requestTimeout?: string;
  maxConnections?: string;
  maxBody?: string;
}

const str = z.string().min(1);
const strOrNum = z.union([z.string().min(1), z.number()]);
/** Keys CloudFileSchema gains (spread into it by config.ts). */
export const CLOUD_SECURITY_FILE_KEYS = {
  'gateway-token-hash': z.union([z.array(str), z.record(z.string(), z.string())]).optional(),
  'tokens-file': str.optional(),
  'read-token': z.union([str, z.array(str)]).optional(),
  'read-token-hash': z.union([str, z.array(str)]).optional(),
  'tls-cert': str.optional(),
  'tls-key': str.optional(),
  'headers-timeout': strOrNum.optional(),
  'request-timeout': strOrNum.optional(),
  'max-connections': z.number().int().min(1).optional(),
  'max-body': strOrNum.optional(),
};
type SecurityFile = { [K in keyof typeof CLOUD_SECURITY_FILE_KEYS]?: z.infer<(typeof CLOUD_SECURITY_FILE_KEYS)[K]> };

export interface CloudSecurityConfig {
  gatewayTokenHashes?: Record<string, string>;
  queryTokens?: string[];
  queryTokenHashes?: string[];
  tls?: CloudTlsConfig;
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxConnections?: number;
  maxBodyBytes?: number;
}

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_CONFIG', message);
}

function checkHash(h: string, where: string): string {
  if (!isSecretHash(h)) throw bad(`${where}: not a scrypt hash (make one with \`sluice cloud hash-token\`)`);
  try {
    parseSecretHash(h);
  } catch (err) {
    throw bad(`${where}: ${(err as Error).message}`);
  }
  return h;
}

function addHashPairs(out: Record<string, string>, pairs: string[], where: string): void {
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq < 0) throw bad(`${where}: expected GW=scrypt$… (the value has no "=")`);
    addHash(out, p.slice(0, eq), p.slice(eq + 1), where);
  }
}

function addHash(out: Record<string, string>, gw: string, hash: string, where: string): void {
  if (!GATEWAY_ID_RE.test(gw)) throw bad(`${where}: gateway id "${gw.slice(0, 70)}" must match [A-Za-z0-9_.-]{1,64}`);
  out[gw] = checkHash(hash, `${where} (gateway "${gw}")`);
}

const tokensFileSchema = z.strictObject({
  gateways: z.record(z.string(), z.string()).optional(),
  read: z.array(z.string()).optional(),
});

function loadTokensFile(path: string): { gateways: Record<string, string>; read: string[] } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw bad(`--tokens-file ${path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    throw bad(`--tokens-file ${path}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const r = tokensFileSchema.safeParse(doc);
  if (!r.success) {
    const i = r.error.issues[0];
    throw bad(`--tokens-file ${path}: ${i.code === 'unrecognized_keys' ? `unknown key "${i.keys[0]}" (want gateways, read)` : `key "${i.path.join('.')}": ${i.message}`}`);
  }
  const gateways: Record<string, string> = {};
  for (const [gw, h] of Object.entries(r.data.gateways ?? {})) addHash(gateways, gw, h, `--tokens-file ${path} gateways`);
  const read = (r.data.read ?? []).map((h, i) => checkHash(h, `--tokens-file ${path} read[${i}]`));
  return { gateways, read };
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Merge flags, environment and file; only keys that are set appear in the result. */
export function resolveCloudSecurity(flags: CloudSecurityFlags, file: SecurityFile = {}, env: NodeJS.ProcessEnv = process.env): CloudSecurityConfig {
  const out: CloudSecurityConfig = {};
  const hashes: Record<string, string> = {};
  const read: string[] = [];
  const tokensFile = flags.tokensFile ?? file['tokens-file'];
  if (tokensFile) {
    const t = loadTokensFile(tokensFile);
    Object.assign(hashes, t.gateways);
    read.push(...t.read);
  }
  const fh = file['gateway-token-hash'];
  if (Array.isArray(fh)) addHashPairs(hashes, fh, 'gateway-token-hash');
  else if (fh) for (const [gw, h] of Object.entries(fh)) addHash(hashes, gw, h, 'gateway-token-hash');
  addHashPairs(hashes, flags.gatewayTokenHash ?? [], '--gateway-token-hash');
  if (Object.keys(hashes).length > 0) out.gatewayTokenHashes = hashes;

  read.push(...list(file['read-token-hash']).map((h, i) => checkHash(h, `read-token-hash[${i}]`)));
  read.push(...(flags.readTokenHash ?? []).map((h) => checkHash(h, '--read-token-hash')));
  if (read.length > 0) out.queryTokenHashes = read;
  const plainRead = [...list(file['read-token']), ...(env.SLUICE_READ_TOKENS?.split(/[\s,]+/).filter(Boolean) ?? []), ...(flags.readToken ?? [])];
  if (plainRead.length > 0) out.queryTokens = [...new Set(plainRead)];

  const cert = flags.tlsCert ?? file['tls-cert'];
  const key = flags.tlsKey ?? file['tls-key'];
  if ((cert === undefined) !== (key === undefined)) throw bad('--tls-cert and --tls-key go together (HTTPS needs both)');
  if (cert !== undefined && key !== undefined) out.tls = { cert, key };

  const dur = (flag: string | undefined, fileV: string | number | undefined, name: string): number | undefined => {
    const v = flag ?? fileV;
    if (v === undefined) return undefined;
    const ms = parseDuration(v, flag !== undefined ? `--${name}` : name);
    if (ms < 100) throw bad(`${flag !== undefined ? `--${name}` : name}: at least 100ms`);
    return ms;
  };
  const ht = dur(flags.headersTimeout, file['headers-timeout'], 'headers-timeout');
  if (ht !== undefined) out.headersTimeoutMs = ht;
  const rt = dur(flags.requestTimeout, file['request-timeout'], 'request-timeout');
  if (rt !== undefined) out.requestTimeoutMs = rt;
  const mc = flags.maxConnections ?? file['max-connections'];
  if (mc !== undefined) {
    const n = Number(mc);
    if (!Number.isInteger(n) || n < 1) throw bad(`${flags.maxConnections !== undefined ? '--max-connections' : 'max-connections'}: must be a positive integer`);
    out.maxConnections = n;
  }
  const mb = flags.maxBody ?? file['max-body'];
  if (mb !== undefined) out.maxBodyBytes = parseSize(mb, flags.maxBody !== undefined ? '--max-body' : 'max-body');
  return out;
}

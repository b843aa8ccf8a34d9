/**
 * Types and error classification shared by the InfluxDB sinks (see influx-writer.ts for the contract).
 */
import { SluiceError } from '../protocols/errors.js';
import type { Logger } from 'pino';

export interface PointSink {
  write(lines: string[]): Promise<void>;
  close(): Promise<void>;
}

export interface InfluxV1Config {
  api: 1;
  /** Base URL, e.g. http://127.0.0.1:8086 */
  url: string;
  db: string;
  user?: string;
  password?: string;
}

export interface InfluxV2Config {
  api: 2;
  url: string;
  org: string;
  bucket: string;
  token: string;
}

export type InfluxConfig = InfluxV1Config | InfluxV2Config;

export interface WriterOptions {
  /** Per-request timeout in ms (default 10000). */
  timeoutMs?: number;
  /** Most lines in one HTTP request (default 5000). */
  maxLinesPerRequest?: number;
  logger?: Logger;
}

export const DEFAULT_WRITE_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_LINES_PER_REQUEST = 5000;

/** Whether a failed write with this HTTP status (undefined: no response at all) can succeed later. */
export function isRetryableStatus(status: number | undefined): boolean {
  if (status === undefined) return true;
  if (status >= 500 || status === 429 || status === 408) return true;
  return status === 401 || status === 403 || status === 404;
}

/** Retry-After as seconds, from a header holding seconds or an HTTP date. */
export function parseRetryAfter(header: string | null | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim());
  const t = Date.parse(header);
  return Number.isNaN(t) ? undefined : Math.max(0, Math.ceil((t - now) / 1000));
}

export function influxWriteError(
  message: string,
  opts: { status?: number; retryAfterSeconds?: number; cause?: unknown } = {},
): SluiceError {
  return new SluiceError('SLUICE_INFLUX_WRITE', message, {
    cause: opts.cause,
    retryable: isRetryableStatus(opts.status),
    detail: { status: opts.status, retryAfterSeconds: opts.retryAfterSeconds },
  });
}

export function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}


export function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

/** Authorization header for the configured API: Basic for 1.x users, `Token` for 2.x/3.x. */
export function influxAuthHeader(cfg: InfluxConfig): Record<string, string> {
  if (cfg.api === 2) return { authorization: `Token ${cfg.token}` };
  if (cfg.user !== undefined) {
    return { authorization: `Basic ${Buffer.from(`${cfg.user}:${cfg.password ?? ''}`).toString('base64')}` };
  }
  return {};
}

/** A short, secret-free description of a fetch/transport error ("fetch failed: ECONNREFUSED"). */
export function describeError(err: unknown): string {
  const e = err as { message?: string; code?: string; cause?: { code?: string; message?: string } };
  const cause = e?.cause?.code ?? e?.cause?.message ?? e?.code;
  return `${e?.message ?? String(err)}${cause ? `: ${cause}` : ''}`;
}

/** InfluxDB error text from a JSON `{ "error": … }`/`{ "message": … }` body, else the raw body. */
export function influxErrorText(body: string): string {
  try {
    const j = JSON.parse(body) as { error?: unknown; message?: unknown };
    const m = j.error ?? j.message;
    if (typeof m === 'string') return m.trim();
  } catch {
    // not JSON
  }
  return body.trim().slice(0, 500);
}

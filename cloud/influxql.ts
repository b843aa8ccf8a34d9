/**
 * InfluxQL over `/query`: quoting helpers and a small client that 1.x, 2.x (v1 compatibility API) and
 * 3.x all serve.
 *
 * Guarantees:
 * - `quoteIdent` / `quoteString` escape every character InfluxQL treats specially inside quotes
 *   (backslash and the quote itself), so a value can never end its quote early. Callers still validate
 *   names against strict patterns first (defence in depth: the query API never passes raw input).
 * - Results come back with `epoch=ms`: times are integers in ms since the epoch.
 * - Errors: SluiceError('SLUICE_INFLUX_QUERY'); `retryable` for network errors and 5xx/429;
 *   `detail.statement` is true when InfluxDB understood the request but refused the statement
 *   (unknown function for the field type, …): that is the caller's query, not an outage.
 */
import { SluiceError } from '../protocols/errors.js';
import { describeError, influxAuthHeader, influxErrorText, trimSlash, type InfluxConfig } from './influx-common.js';

export function quoteIdent(name: string): string {
  return `"${name.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

export function quoteString(s: string): string {
  return `'${s.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

export interface InfluxSeries {
  name: string;
  tags?: Record<string, string>;
  columns: string[];
  values: unknown[][];
}

export interface InfluxQlClientOptions {
  timeoutMs?: number;
}

export class InfluxQlClient {
  private readonly base: string;
  private readonly headers: Record<string, string>;
  private readonly db: string;
  private readonly timeoutMs: number;

  constructor(cfg: InfluxConfig, opts: InfluxQlClientOptions = {}) {
    this.base = trimSlash(cfg.url);
    this.headers = influxAuthHeader(cfg);
    this.db = cfg.api === 1 ? cfg.db : cfg.bucket;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Run one statement; returns the series of its (single) result. */
  async query(q: string): Promise<InfluxSeries[]> {
    let res: Response;
    try {
      res = await fetch(`${this.base}/query`, {
        method: 'POST',
        headers: this.headers,
        body: new URLSearchParams({ q, db: this.db, epoch: 'ms' }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new SluiceError('SLUICE_INFLUX_QUERY', `InfluxDB at ${this.base} unreachable: ${describeError(err)}`, { cause: err, retryable: true });
    }
    const text = await res.text();
    if (!res.ok) {
      throw new SluiceError('SLUICE_INFLUX_QUERY', `InfluxDB refused the query (HTTP ${res.status}): ${influxErrorText(text)}`, {
        retryable: res.status >= 500 || res.status === 429,
        detail: { status: res.status, statement: false },
      });
    }
    let body: { error?: string; results?: { error?: string; series?: InfluxSeries[] }[] };
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new SluiceError('SLUICE_INFLUX_QUERY', 'InfluxDB answered /query with something other than JSON', { cause: err, retryable: true });
    }
    const error = body.error ?? body.results?.[0]?.error;
    if (error) throw new SluiceError('SLUICE_INFLUX_QUERY', `InfluxDB: ${error}`, { detail: { statement: true } });
    return body.results?.[0]?.series ?? [];
  }

  /** True when InfluxDB answers /ping with a 2xx within the timeout. */
  async ping(timeoutMs = 2000): Promise<boolean> {
    try {
      const res = await fetch(`${this.base}/ping`, { headers: this.headers, signal: AbortSignal.timeout(timeoutMs) });
      await res.arrayBuffer();
      return res.ok;
    } catch {
      return false;
    }
  }
}

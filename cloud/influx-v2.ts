/**
 * PointSink for InfluxDB 2.x/3.x (and other `/api/v2/write` servers) through
 * @influxdata/influxdb-client, nanosecond precision.
 *
 * Why a fresh WriteApi per call: the library's WriteApi is a shared buffer with its own timers and
 * retry queue. Lines written by two concurrent callers would be flushed together, an automatic
 * flush on `batchSize` swallows its error, and failed lines are retried in the background after the
 * caller was told they failed. That breaks "resolve only after the server accepted the points". So
 * each `write()` gets its own WriteApi with `maxRetries: 0`, no flush timer, a batch size larger than
 * the request (no automatic flush), and an explicit `flush()` whose promise is the server's answer.
 * The WriteApi is disposed afterwards, leaving nothing queued. Retries belong to the caller.
 *
 * The library logs failed writes to the console through a global logger; this module installs a
 * logger that forwards those messages to pino at debug level (the sink's own error carries the
 * reason), which affects every user of the library in this process.
 * See influx-writer.ts for the PointSink contract.
 */
import { HttpError, InfluxDB, setLogger } from '@influxdata/influxdb-client';
import {
  DEFAULT_MAX_LINES_PER_REQUEST,
  DEFAULT_WRITE_TIMEOUT_MS,
  chunk,
  describeError,
  influxErrorText,
  influxWriteError,
  parseRetryAfter,
  trimSlash,
  type InfluxV2Config,
  type PointSink,
  type WriterOptions,
} from './influx-common.js';

export class InfluxV2Writer implements PointSink {
  private readonly client: InfluxDB;
  private readonly maxLines: number;
  private readonly base: string;

  constructor(
    private readonly cfg: InfluxV2Config,
    opts: WriterOptions = {},
  ) {
    this.base = trimSlash(cfg.url);
    this.client = new InfluxDB({ url: this.base, token: cfg.token, timeout: opts.timeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS });
    this.maxLines = opts.maxLinesPerRequest ?? DEFAULT_MAX_LINES_PER_REQUEST;
    const logger = opts.logger;
    setLogger({
      error: (message, err) => logger?.debug({ err: err ? describeError(err) : undefined }, `influxdb-client: ${message}`),
      warn: (message, err) => logger?.debug({ err: err ? describeError(err) : undefined }, `influxdb-client: ${message}`),
    });
  }

  async start(): Promise<void> {
    // The bucket must exist already (creating one needs an all-access token); the first write says so.
  }

  async write(lines: string[]): Promise<void> {
    for (const part of chunk(lines, this.maxLines)) await this.send(part);
  }

  async close(): Promise<void> {
    // Each write disposes its own WriteApi: nothing is buffered here.
  }

  private async send(lines: string[]): Promise<void> {
    const api = this.client.getWriteApi(this.cfg.org, this.cfg.bucket, 'ns', {
      batchSize: lines.length + 1,
      maxBatchBytes: Number.MAX_SAFE_INTEGER,
      flushInterval: 0,
      maxRetries: 0,
      maxBufferLines: lines.length + 1,
      gzipThreshold: 64 * 1024,
    });
    try {
      api.writeRecords(lines);
      await api.flush();
    } catch (err) {
      if (err instanceof HttpError) {
        const ra = err.headers?.['retry-after'];
        throw influxWriteError(`InfluxDB refused the write (HTTP ${err.statusCode}): ${influxErrorText(err.body ?? err.message)}`, {
          status: err.statusCode,
          retryAfterSeconds: parseRetryAfter(Array.isArray(ra) ? ra[0] : ra),
          cause: err,
        });
      }
      throw influxWriteError(`InfluxDB at ${this.base} unreachable (write): ${describeError(err)}`, { cause: err });
    } finally {
      api.dispose();
    }
  }
}

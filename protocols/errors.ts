/**
 * Errors with stable codes. Callers and tests branch on `code`, never on message text.
 * `retryable` says whether trying the same thing again could succeed.
 */
export type SluiceErrorCode =
  | 'SLUICE_BAD_TOPIC'
  | 'SLUICE_BAD_PAYLOAD'
  | 'SLUICE_BAD_BATCH'
  | 'SLUICE_BAD_CHECKSUM'
  | 'SLUICE_UNSUPPORTED_VERSION'
  | 'SLUICE_TOO_LARGE'
  | 'SLUICE_BAD_CONFIG'
  | 'SLUICE_BAD_QUERY'
  | 'SLUICE_UNAUTHORIZED'
  | 'SLUICE_FORBIDDEN'
  | 'SLUICE_GAP'
  | 'SLUICE_LOG_CLOSED'
  | 'SLUICE_LOG_CORRUPT'
  | 'SLUICE_LOG_FULL'
  | 'SLUICE_CLOUD_REJECTED'
  | 'SLUICE_CLOUD_UNAVAILABLE'
  | 'SLUICE_INFLUX_WRITE'
  | 'SLUICE_INFLUX_QUERY'
  | 'SLUICE_MISSING_DEPENDENCY';

export class SluiceError extends Error {
  readonly code: SluiceErrorCode;
  readonly retryable: boolean;
  /** Extra machine-readable detail (e.g. the expected sequence of a gap). */
  readonly detail?: Record<string, unknown>;

  constructor(
    code: SluiceErrorCode,
    message: string,
    opts: { cause?: unknown; retryable?: boolean; detail?: Record<string, unknown> } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
    this.detail = opts.detail;
  }
}

export function isSluiceError(err: unknown, code?: SluiceErrorCode): err is SluiceError {
  return err instanceof SluiceError && (code === undefined || err.code === code);
}

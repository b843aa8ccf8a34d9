/**
 * HTTPS for the cloud's ingest and query API: the certificate chain and key, read once at start.
 * Gateways verify this certificate against the system CAs or their `--cloud-ca`.
 */
import { readFileSync } from 'node:fs';
import type { SecureContextOptions } from 'node:tls';
import { SluiceError } from '../protocols/errors.js';

export interface CloudTlsConfig {
  /** PEM certificate (chain) file. */
  cert: string;
  /** PEM private key file. */
  key: string;
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new SluiceError('SLUICE_BAD_CONFIG', `${what}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export function loadServerTls(cfg: CloudTlsConfig): SecureContextOptions & { minVersion: 'TLSv1.2' } {
  return { cert: read(cfg.cert, '--tls-cert'), key: read(cfg.key, '--tls-key'), minVersion: 'TLSv1.2' };
}

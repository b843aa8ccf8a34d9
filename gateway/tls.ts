/**
 * MQTT over TLS for the broker: server certificate, optional client-certificate authentication.
 *
 *   clientAuth none      no client certificate asked for
 *   clientAuth optional  a certificate is asked for; a client without one falls back to
 *                        username/password; one that presents a certificate the CA did not sign is
 *                        disconnected right after the handshake
 *   clientAuth require   the TLS handshake fails without a certificate signed by the CA
 *
 * A verified certificate's subject CN is the device id (auth.ts). Files are read once at start.
 */
import { readFileSync } from 'node:fs';
import type { TLSSocket, TlsOptions } from 'node:tls';
import { SluiceError } from '../protocols/errors.js';

export type ClientAuthMode = 'none' | 'optional' | 'require';

export interface TlsListenConfig {
  host: string;
  port: number;
  /** PEM file paths. */
  cert: string;
  key: string;
  /** CA bundle that signs client certificates (needed for optional/require). */
  ca?: string;
  clientAuth: ClientAuthMode;
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new SluiceError('SLUICE_BAD_CONFIG', `${what}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** node:tls server options for the MQTTS listener. */
export function tlsServerOptions(cfg: TlsListenConfig, handshakeTimeoutMs: number): TlsOptions {
  if (cfg.clientAuth !== 'none' && !cfg.ca) throw new SluiceError('SLUICE_BAD_CONFIG', `tls.clientAuth ${cfg.clientAuth} needs tls.ca (--tls-ca), the CA that signs client certificates`);
  return {
    cert: read(cfg.cert, 'tls.cert'),
    key: read(cfg.key, 'tls.key'),
    ...(cfg.ca ? { ca: read(cfg.ca, 'tls.ca') } : {}),
    requestCert: cfg.clientAuth !== 'none',
    rejectUnauthorized: cfg.clientAuth === 'require',
    minVersion: 'TLSv1.2',
    handshakeTimeout: handshakeTimeoutMs,
  };
}

/**
 * The verified client certificate's CN, `undefined` when the client sent none, or `null` when it
 * sent one the CA does not vouch for (the caller refuses that connection).
 */
export function verifiedClientCn(socket: TLSSocket): string | undefined | null {
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return undefined;
  if (!socket.authorized) return null;
  const cn = cert.subject?.CN;
  return typeof cn === 'string' ? cn : Array.isArray(cn) ? null : null;
}

/**
 * aedes and mqtt-packet log through the `debug` package on every packet. Disabled, a `debug(...)`
 * call still builds its argument array and reads a getter: in a QoS 1 ingest profile that was ~20 %
 * of everything the gateway allocated (sampling heap profiler, collected objects included), and the
 * scavenges it causes promote the publishes that wait for their commit. Unless DEBUG is set, the
 * gateway hands those libraries a debug factory whose loggers do nothing. Must run before aedes is
 * loaded (bin/main.ts imports it first for `sluice gateway`).
 */
import { createRequire } from 'node:module';

export function quietDebug(): void {
  if (process.env.DEBUG) return;
  const require = createRequire(import.meta.url);
  let path: string;
  try {
    path = require.resolve('debug');
  } catch {
    return;
  }
  const factory = require('debug') as ((ns: string) => unknown) & Record<string, unknown>;
  const noop = Object.assign(() => undefined, { enabled: false, namespace: '', log: () => undefined, destroy: () => undefined });
  Object.assign(noop, { extend: () => noop });
  const quiet = Object.assign((_namespace: string) => noop, factory);
  const cached = require.cache[path];
  if (cached) cached.exports = quiet;
}

/**
 * A TCP relay for fault tests of the cloud: the cloud talks to InfluxDB through it, so a test can stop
 * the real influxd and start it again (on another port, same data directory) while the cloud keeps one
 * URL. While the target is down, connections are accepted and closed at once (the client sees a
 * network error, as it would against a stopped server behind a load balancer).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface Relay {
  url: string;
  /** Point the relay at another port; undefined refuses every connection. */
  setTarget(port: number | undefined): void;
  close(): Promise<void>;
}

export async function startRelay(targetPort: number | undefined): Promise<Relay> {
  let target = targetPort;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (target === undefined) return void client.destroy();
    const upstream = connect(target, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    setTarget(p) {
      target = p;
      // Cut existing connections so pooled keep-alive sockets do not reach the old target.
      for (const s of sockets) s.destroy();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

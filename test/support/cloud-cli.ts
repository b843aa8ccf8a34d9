/**
 * Run `sluice cloud` / `sluice query` / `sluice alerts` as a child process, registering only the cloud's commands (the
 * same `register()` functions bin/main.ts calls), so these tests do not depend on other subcommands.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../deploy/influxd.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const RUNNER = `
import { Command } from 'commander';
const { register: registerCloud } = await import('./cloud/cli.ts');
const { register: registerQuery } = await import('./cloud/query-cli.ts');
const { register: registerAlerts } = await import('./cloud/alerts-cli.ts');
const program = new Command().name('sluice');
registerCloud(program);
registerQuery(program);
registerAlerts(program);
await program.parseAsync(process.argv.slice(1), { from: 'user' });
`;

export interface SluiceChild {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

export function spawnSluice(args: string[], env: NodeJS.ProcessEnv = {}): SluiceChild {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', RUNNER, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Run to completion. */
export async function runSluice(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = spawnSluice(args, env);
  const code = await c.exited;
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

/** Wait for the `sluice cloud listening on URL` line; returns the URL. */
export async function waitListening(c: SluiceChild, timeoutMs = 30_000): Promise<string> {
  let exitCode: number | null | undefined;
  void c.exited.then((code) => (exitCode = code));
  return waitFor(
    'sluice cloud to listen',
    async () => {
      if (exitCode !== undefined) throw new Error(`sluice cloud exited with ${exitCode}: ${c.stderr().trim().slice(-500)}`);
      const m = /^sluice cloud listening on (http:\/\/\S+)$/m.exec(c.stdout());
      return m?.[1];
    },
    { timeoutMs, intervalMs: 50 },
  );
}

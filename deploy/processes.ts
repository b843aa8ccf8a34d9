/**
 * Start `sluice …` subcommands as child processes and wait for their ready line. Used by the demo,
 * the end-to-end and fault-injection tests (which need real processes to SIGKILL) and benchmarks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const SLUICE_BIN = join(ROOT, 'bin', 'sluice.js');

export interface SluiceProcess {
  child: ChildProcess;
  /** The ready line the process printed. */
  readyLine: string;
  /** Regex groups of the ready line. */
  match: RegExpMatchArray;
  /** stderr tail, for error messages. */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process exited. */
  exited: Promise<number | string>;
  /** SIGTERM (or the given signal), wait for exit; SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | string>;
}

export async function startSluice(
  args: string[],
  ready: RegExp,
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; onStderr?: (chunk: string) => void; nodeArgs?: string[] } = {},
): Promise<SluiceProcess> {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), SLUICE_BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
    opts.onStderr?.(d.toString());
  });
  const readyLine = await new Promise<{ line: string; match: RegExpMatchArray }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sluice ${args[0]} did not become ready within ${opts.timeoutMs ?? 30_000} ms. stderr:\n${err.slice(-3000)}`));
    }, opts.timeoutMs ?? 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      for (const line of out.split('\n')) {
        const m = line.match(ready);
        if (m) {
          clearTimeout(timer);
          resolve({ line, match: m });
          return;
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`sluice ${args[0]} exited (${code}) before it was ready. stderr:\n${err.slice(-3000)}`));
    });
  });
  return {
    child,
    readyLine: readyLine.line,
    match: readyLine.match,
    output: () => err,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

export const GATEWAY_READY = /^sluice gateway (\S+) listening on (mqtt:\/\/\S+)(?: http (http:\/\/\S+))?/;
export const CLOUD_READY = /^sluice cloud listening on (https?:\/\/\S+)/;

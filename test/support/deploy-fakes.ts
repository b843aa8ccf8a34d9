/**
 * A throw-away system for running deploy/pi/install.sh and uninstall.sh: fake `systemctl`,
 * `useradd`, `userdel`, `apt-get` and `npm` on PATH that log their arguments (and do the least the
 * scripts rely on: useradd writes <root>/etc/passwd, npm ci links the checkout's node_modules, apt-get
 * "installs" node and npm), plus a PATH without node to exercise the Node.js install path.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT } from '../../deploy/processes.js';

export const INSTALL_SH = join(ROOT, 'deploy', 'pi', 'install.sh');
export const UNINSTALL_SH = join(ROOT, 'deploy', 'pi', 'uninstall.sh');

export interface FakeSystem {
  /** Directory of the fake commands (first on PATH). */
  bin: string;
  /** PATH for the scripts. */
  path: string;
  /** Arguments each fake command was called with, one call per line (`cwd: args` for npm). */
  calls(cmd: 'systemctl' | 'useradd' | 'userdel' | 'apt-get' | 'npm'): Promise<string[]>;
}

const script = (body: string) => `#!/bin/sh\n${body}\n`;

/**
 * `node`: 'real' puts the running node on PATH; 'missing' builds a PATH without any node (apt-get
 * then provides it); 'old' puts a node that reports version 18.19.0, 'old20' one that reports 20.10.0
 * (a 20.x without zlib.crc32).
 */
export async function fakeSystem(dir: string, node: 'real' | 'missing' | 'old' | 'old20'): Promise<FakeSystem> {
  const bin = join(dir, 'fakebin');
  const logs = join(dir, 'calls');
  await mkdir(bin, { recursive: true });
  await mkdir(logs, { recursive: true });
  const log = (name: string) => `printf '%s\\n' "$*" >> "${join(logs, name)}"`;
  const npm = script(`printf '%s: %s\\n' "$(pwd)" "$*" >> "${join(logs, 'npm')}"
if [ "$1" = ci ]; then rm -rf node_modules && ln -s "${join(ROOT, 'node_modules')}" node_modules; fi`);
  const files: Record<string, string> = {
    systemctl: script(log('systemctl')),
    useradd: script(`${log('useradd')}
root=""
while [ $# -gt 1 ]; do [ "$1" = --root ] && root="$2"; shift; done
mkdir -p "$root/etc" && echo "$1:x:998:998:Sluice:/var/lib/sluice:/usr/sbin/nologin" >> "$root/etc/passwd"`),
    userdel: script(`${log('userdel')}
root=""
while [ $# -gt 1 ]; do [ "$1" = --root ] && root="$2"; shift; done
grep -v "^$1:" "$root/etc/passwd" > "$root/etc/passwd.new"; mv "$root/etc/passwd.new" "$root/etc/passwd"`),
    'apt-get': script(`${log('apt-get')}
case "$*" in *install*nodejs*) ln -sf "${process.execPath}" "${join(bin, 'node')}" ;; esac
case "$*" in *install*npm*) cp "${join(bin, 'npm.fake')}" "${join(bin, 'npm')}" ;; esac`),
    'npm.fake': npm,
  };
  if (node !== 'missing') files.npm = npm;
  if (node === 'old') files.node = script('echo 18.19.0');
  if (node === 'old20') files.node = script('echo 20.10.0');
  for (const [name, body] of Object.entries(files)) {
    await writeFile(join(bin, name), body);
    await chmod(join(bin, name), 0o755);
  }
  let path = `${bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`;
  if (node === 'missing') {
    // Every system command except node/npm, through symlinks.
    const farm = join(dir, 'sysbin');
    await mkdir(farm);
    const skip = new Set(['node', 'nodejs', 'npm', 'npx', 'corepack']);
    for (const d of ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
      if (!existsSync(d)) continue;
      for (const name of await readdir(d)) {
        if (skip.has(name) || existsSync(join(farm, name))) continue;
        await symlink(join(d, name), join(farm, name)).catch(() => undefined);
      }
    }
    path = `${bin}:${farm}`;
  }
  return {
    bin,
    path,
    async calls(cmd) {
      const f = join(logs, cmd);
      return existsSync(f) ? (await readFile(f, 'utf8')).split('\n').filter(Boolean) : [];
    },
  };
}

export interface ScriptResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a deploy script with only the given PATH (and HOME/TMPDIR) in its environment. */
export function runScript(file: string, args: string[], path: string, timeoutMs = 60_000): Promise<ScriptResult> {
  return new Promise((resolve, reject) => {
    const env = { PATH: path, HOME: process.env.HOME ?? '/root', TMPDIR: process.env.TMPDIR ?? '/tmp', LANG: 'C.UTF-8' };
    const child = spawn('/bin/bash', [file, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * The device registry: a YAML file of the MQTT identities the gateway accepts, their hashed secrets
 * and their topic rules. Written by `sluice device add|remove`, read by the gateway.
 *
 *   version: 1
 *   deviceSubscribe: ["devices/{id}/cmd/#"]   # filters every device may subscribe to ({id} = its id)
 *   devices:
 *     sensor-01:
 *       secret: scrypt$N=16384,r=8,p=1$…$…     # never the secret itself
 *       subscribe: []                          # extra filters for this device (optional)
 *   accounts:                                  # local users: operators, dashboards, PLC bridges
 *     operator:
 *       secret: scrypt$…
 *       publish: ["factory/+/cmd"]
 *       subscribe: ["devices/#"]
 *       deny: { subscribe: ["devices/vault-01/#"] }
 *
 * Guarantees
 * - A device publishes only under `devices/{its id}/…` (auth-acl.ts); that is not configurable.
 * - The file is validated as a whole; a bad file is refused at start with a message naming the key,
 *   and a bad edit while running is logged and ignored (the last good registry stays in force).
 * - The running gateway notices changes (mtime/size; checked when a client authenticates, at most
 *   once per second, and every few seconds by the broker), so `sluice device remove` locks a device
 *   out without a restart: its open connections are closed and new ones refused.
 * - Edits are atomic (temporary file + rename, mode 0600) and keep comments; a lock file keeps two
 *   concurrent `sluice device` commands from losing each other's change.
 */
import { open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { parseDocument, parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SluiceError } from '../protocols/errors.js';
import { generateSecret, hashSecret, parseSecretHash } from '../protocols/secret-hash.js';
import { DEVICE_ID_RE } from '../protocols/topic.js';
import { Acl, expandRule, isValidFilter } from './auth-acl.js';

const filter = z.string().refine(isValidFilter, 'must be an MQTT topic filter (+ for one level, # only last)');
const filters = z.array(filter).default([]);
const secret = z.string().refine((s) => {
  try {
    parseSecretHash(s);
    return true;
  } catch {
    return false;
  }
}, 'must be a scrypt hash as written by `sluice device add` (scrypt$N=…,r=…,p=…$SALT$KEY)');

const deviceSchema = z
  .object({
    secret,
    subscribe: filters,
    /** When the entry was created (informational). */
    added: z.string().optional(),
  })
  .strict();

const accountSchema = z
  .object({
    secret,
    publish: filters,
    subscribe: filters,
    deny: z.object({ publish: filters, subscribe: filters }).strict().default({ publish: [], subscribe: [] }),
    added: z.string().optional(),
  })
  .strict();

const idKey = z.string().regex(DEVICE_ID_RE, 'ids must match [A-Za-z0-9_.-]{1,64}');

export const registrySchema = z
  .object({
    version: z.literal(1).default(1),
    deviceSubscribe: filters,
    devices: z.record(idKey, deviceSchema).nullish().transform((v) => v ?? {}),
    accounts: z.record(idKey, accountSchema).nullish().transform((v) => v ?? {}),
  })
  .strict();

export type RegistryFile = z.output<typeof registrySchema>;

export interface RegistryEntry {
  id: string;
  kind: 'device' | 'account';
  /** The stored hash, parsed once. */
  hash: ReturnType<typeof parseSecretHash>;
  acl: Acl;
}

/** Parse and validate registry text. Errors are SLUICE_BAD_CONFIG naming the key (never a secret). */
export function parseRegistry(text: string, where: string): Map<string, RegistryEntry> {
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    throw new SluiceError('SLUICE_BAD_CONFIG', `${where}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const r = registrySchema.safeParse(doc);
  if (!r.success) {
    const i = r.error.issues[0];
    const key = i.path.join('.') || '(top level)';
    const msg = i.code === 'unrecognized_keys' ? `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${[...i.path, k].join('.')}"`).join(', ')}` : `"${key}": ${i.message}`;
    throw new SluiceError('SLUICE_BAD_CONFIG', `${where}: ${msg}`);
  }
  const reg = r.data;
  const out = new Map<string, RegistryEntry>();
  for (const [id, d] of Object.entries(reg.devices)) {
    const subscribe = [...reg.deviceSubscribe, ...d.subscribe].map((f) => expandRule(f, id));
    out.set(id, {
      id,
      kind: 'device',
      hash: parseSecretHash(d.secret),
      acl: new Acl({ publish: [`devices/${id}/#`], subscribe, denyPublish: [], denySubscribe: [] }),
    });
  }
  for (const [id, a] of Object.entries(reg.accounts)) {
    if (out.has(id)) throw new SluiceError('SLUICE_BAD_CONFIG', `${where}: "${id}" is both a device and an account`);
    out.set(id, {
      id,
      kind: 'account',
      hash: parseSecretHash(a.secret),
      acl: new Acl({
        publish: a.publish.map((f) => expandRule(f, id)),
        subscribe: a.subscribe.map((f) => expandRule(f, id)),
        denyPublish: a.deny.publish.map((f) => expandRule(f, id)),
        denySubscribe: a.deny.subscribe.map((f) => expandRule(f, id)),
      }),
    });
  }
  return out;
}

/** The registry as the gateway uses it: lookups, plus change detection on the file. */
export class DeviceRegistry {
  private entries = new Map<string, RegistryEntry>();
  private fingerprint = '';
  private lastCheck = 0;
  private checking: Promise<void> | null = null;
  /** Increments on every successful reload (auth caches key on it). */
  generation = 0;

  constructor(
    readonly path: string,
    private readonly opts: {
      checkIntervalMs?: number;
      onLog?: (level: 'warn' | 'error' | 'info', msg: string, extra?: object) => void;
      /** Called after a change was loaded (the broker closes connections of removed identities). */
      onReload?: () => void;
    } = {},
  ) {}

  /** Load the file; throws SLUICE_BAD_CONFIG if it is missing or invalid. */
  async load(): Promise<void> {
    let st;
    let text;
    try {
      st = await stat(this.path);
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      throw new SluiceError('SLUICE_BAD_CONFIG', `registry ${this.path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    this.entries = parseRegistry(text, `registry ${this.path}`);
    this.fingerprint = `${st.ino}:${st.size}:${st.mtimeMs}`;
    this.lastCheck = Date.now();
    this.generation++;
  }

  get size(): number {
    return this.entries.size;
  }

  get(id: string): RegistryEntry | undefined {
    return this.entries.get(id);
  }

  /** Reload if the file changed; at most one stat per `checkIntervalMs`. Never throws. */
  refresh(): Promise<void> {
    if (this.checking) return this.checking;
    if (Date.now() - this.lastCheck < (this.opts.checkIntervalMs ?? 1000)) return Promise.resolve();
    this.lastCheck = Date.now();
    this.checking = (async () => {
      try {
        const st = await stat(this.path);
        if (`${st.ino}:${st.size}:${st.mtimeMs}` === this.fingerprint) return;
        const before = this.entries.size;
        await this.load();
        this.opts.onLog?.('info', 'device registry reloaded', { path: this.path, entries: this.entries.size, before });
        this.opts.onReload?.();
      } catch (err) {
        this.opts.onLog?.('error', 'device registry changed but cannot be used; keeping the previous one', { path: this.path, err: (err as Error).message });
      } finally {
        this.checking = null;
      }
    })();
    return this.checking;
  }
}

// ---- editing the file (sluice device …) ----

const HEADER = `# Sluice device registry (sluice device add|list|remove). Secrets are stored as scrypt hashes.
# MQTT username = device id, password = the secret printed once by \`sluice device add\`.
# A device may publish only under devices/{its id}/…; it may subscribe to the filters in
# deviceSubscribe ({id} = its own id) plus its own "subscribe" list.
# accounts: local users (operators, dashboards) with explicit publish/subscribe/deny filters.
`;

async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${path}.lock`;
  let fh;
  try {
    fh = await open(lock, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SluiceError('SLUICE_BAD_CONFIG', `${lock} exists: another \`sluice device\` command is editing the registry (remove the file if it is stale)`);
    }
    throw err;
  }
  try {
    return await fn();
  } finally {
    await fh.close();
    await unlink(lock).catch(() => undefined);
  }
}

async function readDoc(path: string, create: boolean) {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !create) {
      throw new SluiceError('SLUICE_BAD_CONFIG', `registry ${path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    text = `${HEADER}version: 1\ndeviceSubscribe: []\ndevices: {}\naccounts: {}\n`;
  }
  parseRegistry(text, `registry ${path}`); // refuse to edit a file the gateway could not load
  return parseDocument(text);
}

async function writeDoc(path: string, doc: ReturnType<typeof parseDocument>): Promise<void> {
  const text = doc.toString();
  parseRegistry(text, `registry ${path}`);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, path);
}

export interface AddOptions {
  /** An account (explicit rules) instead of a device. */
  account?: boolean;
  subscribe?: string[];
  publish?: string[];
  denySubscribe?: string[];
  denyPublish?: string[];
  /** Replace the secret of an existing entry (rotation). */
  rotate?: boolean;
}

/** Create an entry and return its secret (shown once, stored only as a hash). */
export async function addEntry(path: string, id: string, opts: AddOptions = {}): Promise<string> {
  if (!DEVICE_ID_RE.test(id)) throw new SluiceError('SLUICE_BAD_CONFIG', `id "${id.slice(0, 70)}" must match [A-Za-z0-9_.-]{1,64}`);
  for (const f of [...(opts.subscribe ?? []), ...(opts.publish ?? []), ...(opts.denySubscribe ?? []), ...(opts.denyPublish ?? [])]) {
    if (!isValidFilter(f)) throw new SluiceError('SLUICE_BAD_CONFIG', `"${f.slice(0, 100)}" is not an MQTT topic filter`);
  }
  if (!opts.account && (opts.publish?.length || opts.denyPublish?.length || opts.denySubscribe?.length)) {
    throw new SluiceError('SLUICE_BAD_CONFIG', 'publish and deny rules are for accounts (--account); a device always publishes under devices/{id}/');
  }
  const plain = generateSecret();
  const hash = await hashSecret(plain);
  await withLock(path, async () => {
    const doc = await readDoc(path, true);
    const section = opts.account ? 'accounts' : 'devices';
    const other = opts.account ? 'devices' : 'accounts';
    if (doc.hasIn([other, id])) throw new SluiceError('SLUICE_BAD_CONFIG', `"${id}" already exists in ${other}`);
    if (doc.hasIn([section, id])) {
      if (!opts.rotate) throw new SluiceError('SLUICE_BAD_CONFIG', `"${id}" already exists (use --rotate to issue a new secret)`);
      doc.setIn([section, id, 'secret'], hash);
    } else {
      if (!doc.get(section) || typeof doc.get(section) !== 'object') doc.set(section, doc.createNode({}));
      const entry: Record<string, unknown> = { secret: hash };
      if (opts.account) {
        entry.publish = opts.publish ?? [];
        entry.subscribe = opts.subscribe ?? [];
        if (opts.denyPublish?.length || opts.denySubscribe?.length) entry.deny = { publish: opts.denyPublish ?? [], subscribe: opts.denySubscribe ?? [] };
      } else if (opts.subscribe?.length) entry.subscribe = opts.subscribe;
      entry.added = new Date().toISOString();
      doc.setIn([section, id], doc.createNode(entry));
    }
    await writeDoc(path, doc);
  });
  return plain;
}

export async function removeEntry(path: string, id: string): Promise<boolean> {
  return withLock(path, async () => {
    const doc = await readDoc(path, false);
    let found = false;
    for (const section of ['devices', 'accounts']) {
      if (doc.hasIn([section, id])) {
        doc.deleteIn([section, id]);
        found = true;
      }
    }
    if (found) await writeDoc(path, doc);
    return found;
  });
}

export interface ListedEntry {
  id: string;
  kind: 'device' | 'account';
  added?: string;
  publish: string[];
  subscribe: string[];
}

export async function listEntries(path: string): Promise<ListedEntry[]> {
  const text = await readFile(path, 'utf8').catch((err) => {
    throw new SluiceError('SLUICE_BAD_CONFIG', `registry ${path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
  });
  const entries = parseRegistry(text, `registry ${path}`);
  const raw = registrySchema.parse(parseYaml(text) ?? {});
  return [...entries.values()].map((e) => ({
    id: e.id,
    kind: e.kind,
    added: (e.kind === 'device' ? raw.devices[e.id] : raw.accounts[e.id])?.added,
    publish: e.acl.rules.publish,
    subscribe: e.acl.rules.subscribe,
  }));
}

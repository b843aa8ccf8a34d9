/**
 * Certificates made on the fly with the Debian `openssl` binary, for TLS/mTLS tests:
 * a CA, a server certificate for 127.0.0.1/localhost, client certificates whose CN is a device id,
 * and an untrusted CA with a client certificate of its own. EC P-256 keys: fast to make.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface CertFiles {
  dir: string;
  /** The trusted CA's certificate. */
  ca: string;
  server: { cert: string; key: string };
  /** Client certificates by CN, signed by the trusted CA. */
  clients: Record<string, { cert: string; key: string }>;
  /** A CA nobody trusts, and a client certificate it signed (CN given). */
  rogueCa: string;
  rogue: { cert: string; key: string };
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await exec('openssl', args, { cwd });
}

async function keyAndCsr(dir: string, name: string, cn: string): Promise<void> {
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
}

async function selfSignedCa(dir: string, name: string, cn: string): Promise<void> {
  await openssl(
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
}

async function sign(dir: string, name: string, ca: string, ext: string): Promise<void> {
  await writeFile(join(dir, `${name}.ext`), ext);
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`], dir);
}

/** Make everything in `dir` (which must exist). `clients` are the CNs of the client certificates. */
export async function makeCerts(dir: string, clients: string[], rogueCn = 'rogue-device'): Promise<CertFiles> {
  await Promise.all([selfSignedCa(dir, 'ca', 'Sluice Test CA'), selfSignedCa(dir, 'rogue-ca', 'Rogue CA')]);
  await keyAndCsr(dir, 'server', 'localhost');
  await sign(dir, 'server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
  const out: CertFiles = {
    dir,
    ca: join(dir, 'ca.pem'),
    server: { cert: join(dir, 'server.pem'), key: join(dir, 'server.key') },
    clients: {},
    rogueCa: join(dir, 'rogue-ca.pem'),
    rogue: { cert: join(dir, 'rogue.pem'), key: join(dir, 'rogue.key') },
  };
  const clientExt = 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n';
  // Sequential: `-CAcreateserial` writes ca.srl, and parallel writers would race on it.
  for (const cn of clients) {
    const name = `client-${cn}`;
    await keyAndCsr(dir, name, cn);
    await sign(dir, name, 'ca', clientExt);
    out.clients[cn] = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  }
  await keyAndCsr(dir, 'rogue', rogueCn);
  await sign(dir, 'rogue', 'rogue-ca', clientExt);
  return out;
}

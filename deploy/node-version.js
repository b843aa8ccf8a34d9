// The oldest Node.js Sluice runs on, checked before anything else loads (deploy/bootstrap.js for
// `npm run demo` / `npm test`, bin/sluice.js for the `sluice` command): 20.15 is the first 20.x
// with zlib.crc32, which the log and batch codecs use. Plain JavaScript, no dependencies.

export const MIN_NODE = [20, 15];

/** null when `version` ("20.20.2") is new enough, else a message that names what is needed. */
export function nodeTooOld(version = process.versions.node) {
  const [major, minor] = version.split('.').map(Number);
  if (major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1])) return null;
  return `Node.js ${version} is too old: Sluice needs Node.js ${MIN_NODE.join('.')} or newer (zlib.crc32 arrived in 20.15).`;
}

#!/usr/bin/env bash
# Install Sluice as a systemd service on a Raspberry Pi (Raspberry Pi OS / Debian, arm64 or armhf),
# or on any Debian/Ubuntu host (e.g. the cloud VM with --role cloud). Run from a Sluice checkout:
#
#   sudo deploy/pi/install.sh --id site-a --cloud-url https://cloud.example.com --token-file token.txt
#
# What it does (each step is idempotent; re-running upgrades the code and keeps the configuration):
#   1. Node.js: installs the distribution's `nodejs` and `npm` if `node` is missing; refuses a Node.js
#      older than 20 with instructions (Debian 12 / Raspberry Pi OS 12 ship 18).
#   2. Copies Sluice to /opt/sluice and runs `npm ci --omit=dev` there (tsx is a runtime dependency;
#      classic-level ships linux-arm and linux-arm64 prebuilds, so no compiler is needed).
#   3. Creates the `sluice` system user and /var/lib/sluice.
#   4. Writes /etc/sluice/<role>.yaml from deploy/<role>.sample.yaml with the given values, and the
#      secrets to /etc/sluice/<role>.env (mode 0640, group sluice); checks it with --check-config.
#      A gateway without --allow-anonymous gets an empty device registry, /var/lib/sluice/devices.yaml.
#   5. Installs deploy/systemd/sluice-<role>.service, enables it and (re)starts it, and a `sluice`
#      command in /usr/local/bin.
#
# For tests and package builds: --root DIR installs into DIR instead of / (the user is created with
# `useradd --root DIR`, the unit enabled with `systemctl --root=DIR`, nothing is started). Every
# external command (apt-get, npm, useradd, systemctl, node) is looked up on PATH.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install.sh [options]

  --role gateway|cloud     what to install (default gateway)
  --id ID                  gateway id at the cloud (default: this host's name)
  --cloud-url URL          cloud ingest URL, e.g. https://cloud.example.com (gateway)
  --token TOKEN            this gateway's bearer token (prefer --token-file: not in `ps`)
  --token-file FILE        read the token from FILE
  --mqtt HOST:PORT         MQTT listen address (default 0.0.0.0:1883)
  --http HOST:PORT         /metrics, /healthz, /readyz address (default 127.0.0.1:8788)
  --allow-anonymous        accept MQTT devices without credentials (trusted network only)
  --gateway-token GW=TOKEN a gateway allowed at the cloud; repeat per gateway (cloud)
  --influx URL             InfluxDB URL (cloud, default http://127.0.0.1:8086)
  --prefix DIR             where the code goes (default /opt/sluice)
  --root DIR               install into DIR instead of / (tests, package builds); starts nothing
  --force-config           overwrite an existing /etc/sluice/<role>.yaml and .env
  --no-start               enable the service but do not (re)start it
  --non-interactive, -y    never prompt; missing values are errors
  -h, --help               this help
EOF
}

say() { printf '[sluice install] %s\n' "$*"; }
warn() { printf '[sluice install] warning: %s\n' "$*" >&2; }
die() {
  printf '[sluice install] error: %s\n' "$1" >&2
  exit "${2:-1}"
}

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROLE=gateway
ROOT=""
PREFIX=/opt/sluice
GW_ID=""
CLOUD_URL=""
TOKEN=""
MQTT=""
HTTP=""
INFLUX=""
ANONYMOUS=0
GATEWAY_TOKENS=()
FORCE=0
START=1
INTERACTIVE=1
[ -t 0 ] || INTERACTIVE=0

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value" 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --role) need_arg "$@"; ROLE="$2"; shift 2 ;;
    --id) need_arg "$@"; GW_ID="$2"; shift 2 ;;
    --cloud-url) need_arg "$@"; CLOUD_URL="$2"; shift 2 ;;
    --token) need_arg "$@"; TOKEN="$2"; shift 2 ;;
    --token-file) need_arg "$@"; [ -r "$2" ] || die "--token-file $2: cannot read" 2; TOKEN="$(tr -d '\r\n' <"$2")"; shift 2 ;;
    --mqtt) need_arg "$@"; MQTT="$2"; shift 2 ;;
    --http) need_arg "$@"; HTTP="$2"; shift 2 ;;
    --allow-anonymous) ANONYMOUS=1; shift ;;
    --gateway-token) need_arg "$@"; GATEWAY_TOKENS+=("$2"); shift 2 ;;
    --influx) need_arg "$@"; INFLUX="$2"; shift 2 ;;
    --prefix) need_arg "$@"; PREFIX="$2"; shift 2 ;;
    --root) need_arg "$@"; ROOT="$(cd "$2" && pwd)" || die "--root $2: no such directory" 2; shift 2 ;;
    --force-config) FORCE=1; shift ;;
    --no-start) START=0; shift ;;
    --non-interactive | -y) INTERACTIVE=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" 2 ;;
  esac
done
case "$ROLE" in gateway | cloud) ;; *) die "--role must be gateway or cloud, not $ROLE" 2 ;; esac
[ -f "$SRC/package.json" ] && [ -f "$SRC/bin/sluice.js" ] || die "$SRC does not look like a Sluice checkout (run deploy/pi/install.sh from one)"
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then die "run as root: sudo $0 $*"; fi

UNIT="sluice-$ROLE.service"
DEST="$ROOT$PREFIX"
ETC="$ROOT/etc/sluice"
STATE="$ROOT/var/lib/sluice"

# --- 1. Node.js ≥ 20.15 and npm ----------------------------------------------------------------
# 20.15 is the first 20.x with zlib.crc32 (deploy/node-version.js, which the sluice command checks too).
NODE_MIN=20.15
export DEBIAN_FRONTEND=noninteractive
if ! command -v node >/dev/null 2>&1; then
  say "Node.js not found: installing the distribution's nodejs and npm (apt-get)"
  apt-get update -q || warn "apt-get update failed; trying the install anyway"
  apt-get install -y -q --no-install-recommends nodejs npm || die "apt-get install nodejs npm failed"
  command -v node >/dev/null 2>&1 || die "node is still not on PATH after installing nodejs"
fi
NODE="$(command -v node)"
NODE_VERSION="$("$NODE" -p 'process.versions.node' 2>/dev/null || echo unknown)"
NODE_MAJOR="${NODE_VERSION%%.*}"
NODE_MINOR="${NODE_VERSION#*.}"
NODE_MINOR="${NODE_MINOR%%.*}"
case "$NODE_MAJOR" in '' | *[!0-9]*) NODE_MAJOR=0 ;; esac
case "$NODE_MINOR" in '' | *[!0-9]*) NODE_MINOR=0 ;; esac
if [ "$NODE_MAJOR" -lt "${NODE_MIN%%.*}" ] || { [ "$NODE_MAJOR" -eq "${NODE_MIN%%.*}" ] && [ "$NODE_MINOR" -lt "${NODE_MIN#*.}" ]; }; then
  cat >&2 <<EOF
[sluice install] error: $NODE is Node.js $NODE_VERSION; Sluice needs Node.js $NODE_MIN or newer.
  Debian 12 and Raspberry Pi OS 12 (bookworm) ship Node.js 18; Debian 13 (trixie) ships 20.19.
  Install a newer Node.js system-wide (into /usr, not your home directory: the service cannot see
  /home or /root), then run this script again. Either:
    - NodeSource packages (arm64, armhf, amd64):
        curl -fsSL https://deb.nodesource.com/setup_22.x -o nodesource_setup.sh
        sudo bash nodesource_setup.sh && sudo apt-get install -y nodejs
    - or the official binaries from https://nodejs.org/en/download (linux-arm64, linux-armv7l, linux-x64)
      unpacked into /usr/local (then /usr/local/bin/node is used).
  Raspberry Pi 1 / Zero (armv6) have no official Node.js 20 builds: use unofficial-builds.nodejs.org.
EOF
  exit 3
fi
case "$NODE" in
  /home/* | /root/*) die "node is at $NODE: the service runs with ProtectHome=yes and cannot start it. Install Node.js system-wide (see above)." ;;
esac
if ! command -v npm >/dev/null 2>&1; then
  say "npm not found: installing the distribution's npm (apt-get)"
  apt-get install -y -q --no-install-recommends npm || die "apt-get install npm failed"
fi
say "using Node.js $NODE_VERSION at $NODE"

# --- 2. code and production dependencies --------------------------------------------------------
# An upgrade replaces the code under a running service: stop it first (graceful: nothing acknowledged
# is lost; devices hold their QoS 1 readings until it is back).
if [ -z "$ROOT" ] && systemctl is-active --quiet "$UNIT" 2>/dev/null; then
  say "stopping $UNIT for the upgrade"
  systemctl stop "$UNIT" || die "systemctl stop $UNIT failed"
fi
mkdir -p "$DEST"
if [ "$(cd "$DEST" && pwd -P)" != "$(cd "$SRC" && pwd -P)" ]; then
  say "copying Sluice from $SRC to $DEST"
  for item in bin gateway cloud protocols devices-sim deploy; do
    rm -rf "${DEST:?}/$item"
    cp -R "$SRC/$item" "$DEST/$item"
  done
  for f in package.json package-lock.json tsconfig.json README.md LICENSE; do
    if [ -f "$SRC/$f" ]; then cp "$SRC/$f" "$DEST/$f"; fi
  done
fi
say "installing production dependencies (npm ci --omit=dev)"
# cbor-extract is optional: when it has no prebuild and no compiler, npm skips it and cbor-x uses
# its pure-JavaScript decoder. classic-level loads its linux-arm/linux-arm64 prebuild.
(cd "$DEST" && npm ci --omit=dev --no-audit --no-fund) || die "npm ci --omit=dev failed in $DEST"

# --- 3. user and state directory ---------------------------------------------------------------
if ! grep -q '^sluice:' "$ROOT/etc/passwd" 2>/dev/null; then
  say "creating the system user sluice"
  useradd ${ROOT:+--root "$ROOT"} --system --user-group --home-dir /var/lib/sluice --no-create-home \
    --shell /usr/sbin/nologin --comment 'Sluice telemetry' sluice || die "useradd sluice failed"
fi
SLUICE_UID="$(awk -F: '$1 == "sluice" { print $3 }' "$ROOT/etc/passwd" 2>/dev/null || true)"
SLUICE_GID="$(awk -F: '$1 == "sluice" { print $4 }' "$ROOT/etc/passwd" 2>/dev/null || true)"
[ -n "$SLUICE_UID" ] || die "user sluice is not in $ROOT/etc/passwd after useradd"
own() {
  # Numeric ids from $ROOT/etc/passwd, so this also works in a --root tree.
  if chown "$1" "$2" 2>/dev/null; then return; fi
  [ -n "$ROOT" ] || die "chown $1 $2 failed"
  warn "cannot chown $2 (not root?): set its ownership when deploying the tree"
}
mkdir -p "$STATE"
chmod 0750 "$STATE"
own "$SLUICE_UID:$SLUICE_GID" "$STATE"

# --- 4. configuration -------------------------------------------------------------------------
ask() {
  # ask VAR "question" [default]: prompt on a terminal, else fail naming the flag.
  local var="$1" question="$2" default="${3:-}" flag="$4" answer
  if [ -n "${!var}" ]; then return; fi
  if [ "$INTERACTIVE" -eq 1 ]; then
    read -r -p "$question${default:+ [$default]}: " answer
    printf -v "$var" '%s' "${answer:-$default}"
  else
    printf -v "$var" '%s' "$default"
  fi
  [ -n "${!var}" ] || die "$flag is required (or run on a terminal to be asked)" 2
}
sed_escape() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }
# Tokens end up single-quoted in a systemd EnvironmentFile: no whitespace, quotes or backslashes.
SECRET_RE='^[^][:space:]"'"'"'\\[]+$'
URL_RE='^https?://[^[:space:]"'"'"'\\#]+$'
safe_secret() { [[ "$1" =~ $SECRET_RE ]] || die "$2 must not contain spaces, quotes or backslashes" 2; }

mkdir -p "$ETC"
chmod 0755 "$ETC"
CONFIG="$ETC/$ROLE.yaml"
ENVFILE="$ETC/$ROLE.env"
if [ -f "$CONFIG" ] && [ "$FORCE" -eq 0 ]; then
  say "keeping the existing $CONFIG (use --force-config to rewrite it)"
else
  if [ "$ROLE" = gateway ]; then
    DEFAULT_ID="$(hostname 2>/dev/null | tr -c 'A-Za-z0-9_.\n-' '-' | cut -c1-64)"
    ask GW_ID "Gateway id at the cloud" "$DEFAULT_ID" --id
    ask CLOUD_URL "Cloud URL (e.g. https://cloud.example.com)" "" --cloud-url
    if [ -z "$TOKEN" ] && [ "$INTERACTIVE" -eq 1 ]; then read -r -s -p "Token of this gateway at the cloud: " TOKEN && echo; fi
    [ -n "$TOKEN" ] || die "--token or --token-file is required" 2
    [[ "$GW_ID" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "--id must match [A-Za-z0-9_.-]{1,64}, not \"$GW_ID\"" 2
    [[ "$CLOUD_URL" =~ $URL_RE ]] || die "--cloud-url must be an http:// or https:// URL, not \"$CLOUD_URL\"" 2
    safe_secret "$TOKEN" --token
    sed_args=(-e "s|^id: .*|id: $(sed_escape "$GW_ID")|" -e "s|^cloud: .*|cloud: \"$(sed_escape "$CLOUD_URL")\"|")
    [ -n "$MQTT" ] && sed_args+=(-e "s|^mqtt: .*|mqtt: $(sed_escape "$MQTT")|")
    [ -n "$HTTP" ] && sed_args+=(-e "s|^http: .*|http: $(sed_escape "$HTTP")|")
    if [ "$ANONYMOUS" -eq 1 ]; then
      sed_args+=(-e 's|^allowAnonymous: .*|allowAnonymous: true|')
    else
      sed_args+=(-e 's|^# registry: .*|registry: /var/lib/sluice/devices.yaml|')
    fi
    ENV_LINES="SLUICE_CLOUD_TOKEN='$TOKEN'"
  else
    [ "${#GATEWAY_TOKENS[@]}" -gt 0 ] || [ "$INTERACTIVE" -eq 0 ] || {
      read -r -p "Gateway and token allowed at the cloud (GW=TOKEN): " answer && GATEWAY_TOKENS+=("$answer")
    }
    [ "${#GATEWAY_TOKENS[@]}" -gt 0 ] || die "--gateway-token GW=TOKEN is required (repeat per gateway)" 2
    for t in "${GATEWAY_TOKENS[@]}"; do
      [[ "$t" =~ ^[A-Za-z0-9_.-]{1,64}=.+$ ]] || die "--gateway-token must be GW=TOKEN with a valid gateway id" 2
      safe_secret "$t" --gateway-token
    done
    sed_args=(-e 's|^# gateway-token:.*|# gateway-token: (in cloud.env: SLUICE_GATEWAY_TOKENS)|')
    [ -n "$INFLUX" ] && sed_args+=(-e "s|^influx: .*|influx: $(sed_escape "$INFLUX")|")
    ENV_LINES="SLUICE_GATEWAY_TOKENS='${GATEWAY_TOKENS[*]}'"
  fi
  say "writing $CONFIG and $ENVFILE"
  sed "${sed_args[@]}" "$SRC/deploy/$ROLE.sample.yaml" >"$CONFIG.tmp"
  mv "$CONFIG.tmp" "$CONFIG"
  chmod 0640 "$CONFIG"
  own "0:$SLUICE_GID" "$CONFIG"
  (umask 077 && printf '# Secrets of sluice-%s (systemd EnvironmentFile). Mode 0640, group sluice.\n%s\n' "$ROLE" "$ENV_LINES" >"$ENVFILE")
  chmod 0640 "$ENVFILE"
  own "0:$SLUICE_GID" "$ENVFILE"
fi
REGISTRY="$STATE/devices.yaml"
if [ "$ROLE" = gateway ] && grep -q '^registry: /var/lib/sluice/devices.yaml' "$CONFIG" && [ ! -f "$REGISTRY" ]; then
  say "creating an empty device registry $REGISTRY (add devices with: sudo -u sluice sluice device add ID --registry /var/lib/sluice/devices.yaml)"
  printf '# Sluice device registry (sluice device add|list|remove). Secrets are stored as scrypt hashes.\nversion: 1\ndeviceSubscribe: []\ndevices: {}\naccounts: {}\n' >"$REGISTRY"
  chmod 0600 "$REGISTRY"
  own "$SLUICE_UID:$SLUICE_GID" "$REGISTRY"
  "$NODE" "$DEST/bin/sluice.js" device list --registry "$REGISTRY" >/dev/null || die "the new registry $REGISTRY is not readable by sluice device list"
fi
say "checking $CONFIG"
(
  set -a
  # shellcheck disable=SC1090
  [ -f "$ENVFILE" ] && . "$ENVFILE"
  set +a
  "$NODE" "$DEST/bin/sluice.js" "$ROLE" --config "$CONFIG" --check-config
) || die "the configuration was refused (see the message above); fix $CONFIG and run again" 2

# --- 5. systemd unit and the `sluice` command ---------------------------------------------------
mkdir -p "$ROOT/usr/local/bin"
printf '#!/bin/sh\n# Installed by Sluice deploy/pi/install.sh\nexec %s %s/bin/sluice.js "$@"\n' "$NODE" "$PREFIX" >"$ROOT/usr/local/bin/sluice"
chmod 0755 "$ROOT/usr/local/bin/sluice"
UNIT_DIR="$ROOT/etc/systemd/system"
mkdir -p "$UNIT_DIR"
sed -e "s|/usr/bin/node |$(sed_escape "$NODE") |" -e "s|/opt/sluice/|$(sed_escape "$PREFIX")/|g" "$SRC/deploy/systemd/$UNIT" >"$UNIT_DIR/$UNIT"
chmod 0644 "$UNIT_DIR/$UNIT"
if [ -n "$ROOT" ]; then
  systemctl --root="$ROOT" enable "$UNIT" || die "systemctl enable $UNIT failed"
  say "installed into $ROOT; nothing started"
else
  systemctl daemon-reload
  systemctl enable "$UNIT" || die "systemctl enable $UNIT failed"
  if [ "$START" -eq 1 ]; then
    systemctl restart "$UNIT" || die "systemctl restart $UNIT failed: see journalctl -u sluice-$ROLE"
    say "started $UNIT"
  fi
fi
say "done. Logs: journalctl -u sluice-$ROLE -f   Status: systemctl status sluice-$ROLE"
if [ "$ROLE" = gateway ]; then
  say "Health: curl -s http://127.0.0.1:8788/readyz   Metrics: curl -s http://127.0.0.1:8788/metrics (with the default http address)"
fi

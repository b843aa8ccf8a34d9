#!/usr/bin/env bash
# Remove the Sluice service(s) installed by deploy/pi/install.sh.
#
#   sudo deploy/pi/uninstall.sh            stop and disable the units, remove them and /opt/sluice;
#                                          keep /etc/sluice (configuration, secrets), /var/lib/sluice
#                                          (the gateway's log: readings not yet forwarded!) and the user
#   sudo deploy/pi/uninstall.sh --purge    also remove /etc/sluice, /var/lib/sluice, /var/cache/sluice
#                                          and the sluice user
#
# --root DIR works on a tree installed with `install.sh --root DIR` (tests); --prefix as for install.
set -euo pipefail

say() { printf '[sluice uninstall] %s\n' "$*"; }
die() {
  printf '[sluice uninstall] error: %s\n' "$1" >&2
  exit "${2:-1}"
}

ROOT=""
PREFIX=/opt/sluice
PURGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a value" 2; ROOT="$(cd "$2" && pwd)" || die "--root $2: no such directory" 2; shift 2 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value" 2; PREFIX="$2"; shift 2 ;;
    --purge) PURGE=1; shift ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown option $1" 2 ;;
  esac
done
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then die "run as root: sudo $0 $*"; fi

for unit in sluice-gateway.service sluice-cloud.service; do
  [ -f "$ROOT/etc/systemd/system/$unit" ] || continue
  if [ -n "$ROOT" ]; then
    systemctl --root="$ROOT" disable "$unit" || true
  else
    # Stopping the gateway is graceful (SIGTERM): pending commits finish, LevelDB closes.
    systemctl disable --now "$unit" || true
  fi
  rm -f "$ROOT/etc/systemd/system/$unit"
  say "removed $unit"
done
[ -n "$ROOT" ] || systemctl daemon-reload || true

rm -rf "${ROOT}${PREFIX:?}"
if grep -qs 'Installed by Sluice' "$ROOT/usr/local/bin/sluice"; then rm -f "$ROOT/usr/local/bin/sluice"; fi
say "removed $ROOT$PREFIX and the sluice command"

if [ "$PURGE" -eq 1 ]; then
  rm -rf "$ROOT/etc/sluice" "$ROOT/var/lib/sluice" "$ROOT/var/cache/sluice"
  if grep -q '^sluice:' "$ROOT/etc/passwd" 2>/dev/null; then
    userdel ${ROOT:+--root "$ROOT"} sluice || say "userdel sluice failed; remove the user by hand"
  fi
  say "purged configuration, data and the sluice user"
else
  if [ -d "$ROOT/var/lib/sluice/gateway/log" ]; then
    say "kept $ROOT/var/lib/sluice: the gateway log may still hold readings not yet forwarded"
  fi
  say "kept $ROOT/etc/sluice and $ROOT/var/lib/sluice (use --purge to remove them and the sluice user)"
fi

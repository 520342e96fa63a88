#!/usr/bin/env bash
# Checks contrib/systemd's units with systemd-analyze verify (syntax, known
# directives, the socket/service pairing), with ExecStart pointed at the
# freshly built binary.
set -euo pipefail
src=$1 build=$2
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze missing (Debian package systemd)"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src/contrib/systemd/warmbox.socket" "$tmp/"
sed "s|/usr/local/bin/warmbox|$build/warmbox|g" "$src/contrib/systemd/warmbox.service" >"$tmp/warmbox.service"
out=$(cd "$tmp" && systemd-analyze verify ./warmbox.socket ./warmbox.service 2>&1) || { echo "$out"; exit 1; }
# verify prints warnings without failing: any line about our units is a defect.
if grep -E "warmbox\.(service|socket)" <<<"$out"; then exit 1; fi
echo "units OK"

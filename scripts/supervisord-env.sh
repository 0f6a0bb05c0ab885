#!/usr/bin/env bash
# A convenience: supervisord.conf needs nothing exported (`supervisord -c supervisord.conf`
# and `supervisorctl status` from the project root work as typed). This script runs the
# venv's binaries from the project root, with run/ created owner-only (0700).
#   scripts/supervisord-env.sh            start supervisord (daemon; -n for foreground)
#   scripts/supervisord-env.sh ctl status supervisorctl
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/.venv/bin"
if [ "${1:-}" = "ctl" ]; then
  shift
  exec "$BIN/supervisorctl" -c "$ROOT/supervisord.conf" "$@"
fi
mkdir -p run
chmod 700 run
exec "$BIN/supervisord" -c "$ROOT/supervisord.conf" "$@"

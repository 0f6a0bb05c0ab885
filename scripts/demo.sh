#!/usr/bin/env bash
# make demo: ibsim + engine + web + alert-listener under supervisord, on a clock that
# starts a minute before the last session's 09:35 entry. `make stop` ends it.
# supervisord.conf needs nothing exported; the clock and the dashboard password reach
# the programs through supervisord's environment.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
CTL="$ROOT/.venv/bin/supervisorctl"
if [ "${1:-}" = "stop" ]; then
  if [ -S run/supervisor.sock ]; then
    "$CTL" -c supervisord.conf shutdown || true
  fi
  exit 0
fi
mkdir -p run
chmod 700 run
if [ -S run/supervisor.sock ] && "$CTL" -c supervisord.conf status >/dev/null 2>&1; then
  echo "demo already running: supervisorctl status  (make stop to end it)"
  exit 0
fi
# The dashboard password: from the environment, else one generated for this demo.
if [ -z "${TRADING_BOT_WEB_PASSWORD:-}" ]; then
  if [ ! -f run/web-password ]; then
    (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(12))' > run/web-password)
  fi
  TRADING_BOT_WEB_PASSWORD="$(cat run/web-password)"
fi
export TRADING_BOT_WEB_PASSWORD
export TRADING_BOT_CONFIG="${TRADING_BOT_CONFIG:-$ROOT/config/demo.toml}"
START="$("$PY" -m ops.demo_clock 09:35)"
# ibsim's clock follows clock.start ([ibsim] now is empty in the demo profile).
export TRADING_BOT__CLOCK__START="${TRADING_BOT__CLOCK__START:-\"$START\"}"
scripts/supervisord-env.sh
PORT="$("$PY" -c 'from config.loader import load_config; print(load_config().web.port)')"
echo "waiting for the dashboard…"
for _ in $(seq 1 60); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" 2>/dev/null; then
    break
  fi
  sleep 1
done
cat <<MSG

  trading-bot demo is running on the simulated gateway (ibsim).
  Dashboard:  http://127.0.0.1:$PORT/
  Login:      password $TRADING_BOT_WEB_PASSWORD
  Clock:      starts at $START (the 09:35 entry comes within a minute)

  From $ROOT (with .venv/bin on PATH, or prefix .venv/bin/):
  supervisorctl status               programs
  supervisorctl tail -f engine       engine log
  supervisorctl restart engine       safe at any time: state is in SQLite
  make stop                          stop everything
MSG

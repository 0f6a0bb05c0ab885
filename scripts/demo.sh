#!/usr/bin/env bash
# make demo: ibsim + engine + web + alert-listener under supervisord, on a clock that
# starts a minute before the last session's 09:35 entry. `make stop` ends it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
export TB_RUN_DIR="${TB_RUN_DIR:-$ROOT/run}"
if [ "${1:-}" = "stop" ]; then
  if [ -S "$TB_RUN_DIR/supervisor.sock" ]; then
    scripts/supervisord-env.sh ctl shutdown || true
  fi
  exit 0
fi
mkdir -p "$TB_RUN_DIR"
if [ -S "$TB_RUN_DIR/supervisor.sock" ] && scripts/supervisord-env.sh ctl status >/dev/null 2>&1; then
  echo "demo already running: scripts/supervisord-env.sh ctl status  (make stop to end it)"
  exit 0
fi
# The dashboard password: from the environment, else one generated for this demo.
if [ -z "${TRADING_BOT_WEB_PASSWORD:-}" ]; then
  if [ ! -f "$TB_RUN_DIR/web-password" ]; then
    "$PY" -c 'import secrets; print(secrets.token_urlsafe(12))' > "$TB_RUN_DIR/web-password"
  fi
  TRADING_BOT_WEB_PASSWORD="$(cat "$TB_RUN_DIR/web-password")"
fi
export TRADING_BOT_WEB_PASSWORD
export TRADING_BOT_CONFIG="${TRADING_BOT_CONFIG:-$ROOT/config/demo.toml}"
START="$("$PY" -m actors.demo_clock 09:35)"
export TRADING_BOT__CLOCK__START="${TRADING_BOT__CLOCK__START:-\"$START\"}"
export TB_IBSIM_NOW="${TB_IBSIM_NOW:-$START}"
export TB_START_IBSIM=true
scripts/supervisord-env.sh
PORT="$("$PY" -c 'from actors.config import load_config; print(load_config().web.port)')"
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

  scripts/supervisord-env.sh ctl status        programs
  scripts/supervisord-env.sh ctl tail -f engine  engine log
  make stop                                    stop everything
MSG

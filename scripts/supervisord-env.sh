#!/usr/bin/env bash
# Defaults for every variable supervisord.conf uses, then supervisord (or supervisorctl).
#   scripts/supervisord-env.sh            start supervisord (daemon; -n for foreground)
#   scripts/supervisord-env.sh ctl status supervisorctl with the same settings
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export TB_ROOT="${TB_ROOT:-$ROOT}"
export TB_PYTHON="${TB_PYTHON:-$ROOT/.venv/bin/python}"
export TB_RUN_DIR="${TB_RUN_DIR:-$ROOT/run}"
export TB_LOG_DIR="${TB_LOG_DIR:-$TB_RUN_DIR/logs}"
export TB_IBSIM_LOG="${TB_IBSIM_LOG:-$TB_LOG_DIR/ibsim.log}"
export TB_ENGINE_LOG="${TB_ENGINE_LOG:-$TB_LOG_DIR/engine.log}"
export TB_WEB_LOG="${TB_WEB_LOG:-$TB_LOG_DIR/web.log}"
export TB_LISTENER_LOG="${TB_LISTENER_LOG:-$TB_LOG_DIR/alert-listener.log}"
export TB_LOG_MAXBYTES="${TB_LOG_MAXBYTES:-50MB}"
export TB_SOCKET="${TB_SOCKET:-$TB_RUN_DIR/supervisor.sock}"
export SUPERVISOR_USER="${SUPERVISOR_USER:-admin}"
export SUPERVISOR_PASSWORD="${SUPERVISOR_PASSWORD:-change-me}"
export TRADING_BOT_CONFIG="${TRADING_BOT_CONFIG:-$ROOT/config/demo.toml}"
export TB_START_IBSIM="${TB_START_IBSIM:-true}"
export TB_IBSIM_PORT="${TB_IBSIM_PORT:-4002}"
export TB_IBSIM_CONTROL_PORT="${TB_IBSIM_CONTROL_PORT:-4010}"
export TB_IBSIM_NOW="${TB_IBSIM_NOW:-}"
# The engine's watchdog restarts the gateway program through this socket.
export TRADING_BOT__WATCHDOG__SUPERVISOR_URL="${TRADING_BOT__WATCHDOG__SUPERVISOR_URL:-unix://$TB_SOCKET}"
mkdir -p "$TB_RUN_DIR" "$TB_LOG_DIR"
BIN="$(dirname "$TB_PYTHON")"
if [ "${1:-}" = "ctl" ]; then
  shift
  exec "$BIN/supervisorctl" -c "$ROOT/supervisord.conf" "$@"
fi
exec "$BIN/supervisord" -c "$ROOT/supervisord.conf" "$@"

"""The ZeroMQ protocol's ops, shared by the engine (server) and the dashboard (client).

Envelope: request `{"v": 1, "id", "op", "args"}` (commands may add `sent_at` or
`deadline`); reply `{"id", "ok": true, "data"}` or `{"id", "ok": false, "error":
{"code", "message"}}`.
"""

from __future__ import annotations

PROTOCOL_VERSION = 1
# Reads the book answers (the dashboard's views).
READ_OPS = ("status", "positions", "orders", "trades", "pnl_history", "alerts")
# Reads the engine answers itself, not the book.
ENGINE_READ_OPS = ("market_data",)
COMMAND_OPS = (
    "enter_now",
    "pause",
    "resume",
    "repair_exits",
    "restart_gateway",
    "kill_switch",
)

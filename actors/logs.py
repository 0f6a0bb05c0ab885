"""One loguru setup for every process (engine, web, ibsim, alert listener).

Format names the process and the actor; a filter redacts secrets (passwords,
tokens, webhook URLs' paths and query strings) before a line is written.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from loguru import logger

_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level:<7} | {extra[process]}:{extra[actor]} | {message}"
)

# Values that must never reach a log line, whatever the caller wrote.
_PATTERNS = [
    # key=value / key: value for secret-looking keys
    re.compile(
        r"(?i)\b(password|passwd|secret|token|api[_-]?key|authorization|hmac)"
        r"(\s*[=:]\s*|\"\s*:\s*\")([^\s\"',&}]+)"
    ),
    # credentials in URLs: scheme://user:pass@host
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)"),
]
# Webhook URLs carry their token in the path or query: keep scheme and host only.
_WEBHOOK_URL = re.compile(r"(?i)\b(https?://[^/\s\"']+)(/[^\s\"']*)")


def redact(text: str) -> str:
    """Mask secrets in `text` (idempotent)."""
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}***{m.group(3)}", text)
    text = _WEBHOOK_URL.sub(
        lambda m: f"{m.group(1)}/***" if _looks_secret(m.group(2)) else m.group(0), text
    )
    for value in _secret_env_values():
        text = text.replace(value, "***")
    return text


def _looks_secret(path: str) -> bool:
    # Slack/Discord/ntfy hooks put the token in the path; any query string may hold one.
    return "?" in path or any(s in path for s in ("/hooks/", "/webhooks/", "/services/", "/hook"))


_SECRET_ENV_NAMES = re.compile(r"(?i)(PASSWORD|SECRET|TOKEN|WEBHOOK|API_KEY)")


def _secret_env_values() -> list[str]:
    return [v for k, v in os.environ.items() if _SECRET_ENV_NAMES.search(k) and len(v) >= 6]


def _patch(record: Any) -> None:
    record["message"] = redact(record["message"])
    record["extra"].setdefault("process", _process_name)
    record["extra"].setdefault("actor", "-")


_process_name = "main"


def setup_logging(process: str, log_dir: str | None = None, level: str = "INFO") -> None:
    """Log to stdout (supervisord/Docker collect it) and, if set, a rotated file."""
    global _process_name
    _process_name = process
    logger.remove()
    # Line-buffered, so that the last lines before a kill -9 reach the log file.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    logger.configure(patcher=_patch, extra={"process": process, "actor": "-"})
    logger.add(sys.stdout, format=_FORMAT, level=level, enqueue=False, backtrace=False)
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        logger.add(
            str(Path(log_dir) / f"{process}.log"),
            format=_FORMAT,
            level=level,
            rotation="20 MB",
            retention=5,
            enqueue=True,
        )

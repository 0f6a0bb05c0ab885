"""One loguru setup for every process (engine, web, ibsim, alert listener).

Format names the process and the actor; secrets (passwords, tokens, webhook
URLs' paths and query strings) are redacted before a line is written. Our sinks
render the whole line themselves (time, message and exception text), redact all
of it, and show tracebacks without local variables (`diagnose=False`,
`backtrace=False`): an exception's text or a local holding a webhook URL never
reaches a sink. `fmt="json"` writes one JSON object per line for log shippers.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from loguru import logger

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


# The names of the environment's secret variables, found again only when the number of
# variables changes (or setup_logging starts a process's logging); their values are read
# on each call, so a secret changed in place is masked at once. Scanning every variable
# on every call cost 40 us a field, five fields a JSON line and a sink each: bench.entry's
# log lines before a sale (one per lot whose exits it cancelled) took 0.4 ms each.
_secret_names: tuple[int, list[str]] | None = None


def _secret_env_values() -> list[str]:
    global _secret_names
    size = len(os.environ)
    if _secret_names is None or _secret_names[0] != size:
        _secret_names = (size, [k for k in os.environ if _SECRET_ENV_NAMES.search(k)])
    values = (os.environ.get(k, "") for k in _secret_names[1])
    return [v for v in values if len(v) >= 6]


def forget_secret_values() -> None:
    """Look for the environment's secret variables afresh on the next line (one was
    replaced by another of a new name, the count unchanged)."""
    global _secret_names
    _secret_names = None


def _exception_text(record: Any) -> str:
    exc = record["exception"]
    if exc is None or exc.type is None:
        return ""
    # The standard library's rendering: frames and the exception text, never locals.
    return "".join(traceback.format_exception(exc.type, exc.value, exc.traceback)).rstrip("\n")


def render_text(record: Any) -> str:
    """One log line (plus a traceback if any), redacted as a whole."""
    extra = record["extra"]
    line = (
        record["time"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        + f" | {record['level'].name:<7} | {extra.get('process', _process_name)}:"
        f"{extra.get('actor', '-')} | {record['message']}"
    )
    exc = _exception_text(record)
    return redact(f"{line}\n{exc}" if exc else line)


def render_json(record: Any) -> str:
    """One JSON object per line: time, level, process, actor, message[, exception]."""
    extra = record["extra"]
    out = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "process": extra.get("process", _process_name),
        "actor": extra.get("actor", "-"),
        "message": record["message"],
    }
    exc = _exception_text(record)
    if exc:
        out["exception"] = exc
    # Each field redacted before serialising: a pattern run over the JSON text could
    # swallow an escaping backslash and break the line.
    return json.dumps({k: redact(str(v)) for k, v in out.items()}, ensure_ascii=False)


def _formatter(render: Any) -> Any:
    """A loguru format function: the rendered, redacted line goes in as a value (so that
    braces or `<tags>` in it are never read as format fields or colour markup)."""

    def fmt(record: Any) -> str:
        record["extra"]["_line"] = render(record)
        return "{extra[_line]}\n"

    return fmt


def _patch(record: Any) -> None:
    record["message"] = redact(record["message"])
    record["extra"].setdefault("process", _process_name)
    record["extra"].setdefault("actor", "-")


_process_name = "main"


def setup_logging(
    process: str, log_dir: str | None = None, level: str = "INFO", fmt: str = "text"
) -> None:
    """Log to stdout (supervisord/Docker collect it) and, if set, a rotated file;
    `fmt` is "text" or "json" (`[logging] format`)."""
    global _process_name
    forget_secret_values()
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, got {fmt!r}")
    line = _formatter(render_json if fmt == "json" else render_text)
    _process_name = process
    logger.remove()
    # Line-buffered, so that the last lines before a kill -9 reach the log file.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    logger.configure(patcher=_patch, extra={"process": process, "actor": "-"})
    logger.add(sys.stdout, format=line, level=level, enqueue=False, colorize=False,
               backtrace=False, diagnose=False)
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        logger.add(
            str(Path(log_dir) / f"{process}.log"),
            format=line,
            level=level,
            rotation="20 MB",
            retention=5,
            enqueue=True,
            backtrace=False,
            diagnose=False,
        )

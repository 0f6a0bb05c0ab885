"""ibsim's own loguru setup (the gateway shares no code with the bot it serves)."""

from __future__ import annotations

import sys
from pathlib import Path

from loguru import logger

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level:<7} | ibsim:{extra[actor]} | {message}"


def setup_logging(log_dir: str | None = None, level: str = "INFO") -> None:
    """stdout (line-buffered, so the last lines before a kill reach the log) and, if set,
    a rotated ibsim.log in `log_dir`."""
    logger.remove()
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    logger.configure(extra={"actor": "-"})
    logger.add(sys.stdout, format=FORMAT, level=level, colorize=False, backtrace=False,
               diagnose=False)
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        logger.add(str(Path(log_dir) / "ibsim.log"), format=FORMAT, level=level,
                   rotation="20 MB", retention=5, enqueue=True, backtrace=False,
                   diagnose=False)

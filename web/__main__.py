"""`python -m web --config PATH`: the dashboard under waitress (a production WSGI server)."""

from __future__ import annotations

import sys

from loguru import logger

from config.loader import cli_config
from ops import ast_guard
from ops.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    ast_guard.install()  # waitress threads may format tracebacks at once (CPython 3.11)
    cfg = cli_config("python -m web", argv, __doc__)
    setup_logging("web", cfg.logging.dir or None, cfg.logging.level, cfg.logging.format)
    from waitress import serve

    from web.app import create_app

    app = create_app(cfg)
    logger.info("dashboard on http://{}:{}/ (engine at {})", cfg.web.host, cfg.web.port,
                cfg.zmq.endpoint)
    serve(app, host=cfg.web.host, port=cfg.web.port, threads=cfg.web.threads, ident="trading-bot")
    return 0


if __name__ == "__main__":
    sys.exit(main())

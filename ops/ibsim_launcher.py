"""`python -m ops.ibsim_launcher [--config PATH] [--default-config PATH]`: the
simulated gateway as supervisord.conf starts it, its settings read from the profile.

With `[ibsim] enabled = true` (the demo profile) it replaces itself with
`python -m ibsim` on `gateway.port` and `ibsim.control_port` (exec: supervisord's
signals reach ibsim itself); otherwise it exits 0 at once, an expected exit, so a
profile next to a real gateway runs no simulator. ibsim itself reads no config: it
imports nothing from actors/ for its settings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from config.loader import Config, cli_config


def ibsim_argv(cfg: Config) -> list[str]:
    state = cfg.ibsim.state_file or str(Path(cfg.storage.path).parent / "ibsim-state.json")
    argv = [sys.executable, "-m", "ibsim", "--host", cfg.gateway.host,
            "--port", str(cfg.gateway.port), "--control-port", str(cfg.ibsim.control_port),
            "--state-file", state, "--tick-mode", cfg.ibsim.tick_mode]
    now = cfg.ibsim.now or cfg.clock.start
    if now:
        argv += ["--now", now]
    if cfg.gateway.account:
        argv += ["--account", cfg.gateway.account]
    return argv


def main(argv: list[str] | None = None) -> int:
    cfg = cli_config("python -m ops.ibsim_launcher", argv, __doc__)
    if not cfg.ibsim.enabled:
        print("ibsim: not enabled in this profile ([ibsim] enabled = false); nothing to run",
              flush=True)
        return 0
    args = ibsim_argv(cfg)
    Path(args[args.index("--state-file") + 1]).parent.mkdir(parents=True, exist_ok=True)
    os.execv(sys.executable, args)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())

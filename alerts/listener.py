"""supervisord event listener: a webhook when a program dies, backs off or goes FATAL.

`python -m alerts.listener [--config PATH]` under `[eventlistener:...]`.
stdout carries only the listener protocol (READY / RESULT); logs go to stderr.
After trying the webhooks it always answers OK: FAIL would make supervisord
send the same event again and again. Repeats for one program within a window
are coalesced (a crash loop passes through BACKOFF many times).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import IO

from config.loader import Config, cli_config

WATCHED = ("PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF", "PROCESS_STATE_FATAL")


def parse_tokens(line: str) -> dict[str, str]:
    return dict(tok.split(":", 1) for tok in line.split() if ":" in tok)


@dataclass
class Decision:
    alert: bool
    program: str = ""
    message: str = ""


def decide(headers: dict[str, str], payload: dict[str, str], own_name: str) -> Decision:
    """Whether an event deserves an alert: unexpected exits, BACKOFF and FATAL."""
    event = headers.get("eventname", "")
    program = payload.get("processname", "?")
    group = payload.get("groupname", program)
    if event not in WATCHED or program == own_name or group == own_name:
        return Decision(False)
    state = event.removeprefix("PROCESS_STATE_")
    if event == "PROCESS_STATE_EXITED" and payload.get("expected") == "1":
        return Decision(False)
    detail = f" (pid {payload['pid']})" if "pid" in payload else ""
    was = payload.get("from_state", "?")
    return Decision(
        True, program, f"supervisord: program {program} is {state} (from {was}){detail}"
    )


class Coalescer:
    def __init__(self, window: float) -> None:
        self.window = window
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def admit(self, program: str, now: float) -> int | None:
        """None to hold back; else how many repeats were held back before this one."""
        if now - self.last.get(program, -1e18) < self.window:
            self.suppressed[program] = self.suppressed.get(program, 0) + 1
            return None
        self.last[program] = now
        return self.suppressed.pop(program, 0)


def post(cfg: Config, kind: str, message: str, severity: str, count: int) -> None:
    from alerts.dispatcher import deliver

    alert = {
        "id": 0,
        "time": time.time(),
        "last_time": time.time(),
        "kind": kind,
        "severity": severity,
        "message": message,
        "count": count,
        "details": {},
    }
    for hook in cfg.alerts.webhooks:
        try:
            deliver(hook, alert, min(cfg.alerts.timeout, 5.0))
        except Exception as exc:
            from ops.logs import redact

            print(f"alert-listener: webhook failed: {redact(str(exc))}", file=sys.stderr)


def run(cfg: Config, stdin: IO[str], stdout: IO[str], own_name: str = "alert-listener") -> None:
    coalescer = Coalescer(cfg.alerts.coalesce_window)
    while True:
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return
        headers = parse_tokens(line)
        body = stdin.read(int(headers.get("len", "0")))
        first, _, _data = body.partition("\n")
        decision = decide(headers, parse_tokens(first), own_name)
        if decision.alert:
            held = coalescer.admit(decision.program, time.time())
            if held is not None:
                message = decision.message + (f" ({held} repeats held back)" if held else "")
                print(f"alert-listener: {message}", file=sys.stderr)
                post(cfg, "process_crashed", message, "critical", held + 1)
        stdout.write("RESULT 2\nOK")
        stdout.flush()


def main(argv: list[str] | None = None) -> int:
    cfg = cli_config("python -m alerts.listener", argv, __doc__)
    run(cfg, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

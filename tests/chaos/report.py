"""The chaos soak's report: counts of faults, kills and checks, the violations, and its
text and JSON forms (what `python -m tests.chaos.soak` prints)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from tests.chaos.plan import NAKED_LIMIT, WAITING_FAULTS


@dataclass
class Report:
    seed: int
    days: int
    faults: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    checks: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    entries: Counter[str] = field(default_factory=Counter)
    lots: Counter[str] = field(default_factory=Counter)
    alerts_delivered: int = 0
    alert_kinds: Counter[str] = field(default_factory=Counter)
    crash_alerts: int = 0
    seconds: float = 0.0
    quantity: int = 1
    contracts_sold: int = 0  # by the engine's sales (lots of ours), however they closed
    samples: int = 0
    worst_naked: float = 0.0  # while the engine could act
    worst_naked_wall: float = 0.0  # counting outages, logouts and kills too
    # Alerts whose delivery raced a kill -9 and came again (same id; at least once).
    redelivered_after_kill: list[int] = field(default_factory=list)

    waiting: dict[str, str] = field(default_factory=lambda: dict(WAITING_FAULTS))

    def violate(self, day: str, what: str) -> None:
        self.violations.append(f"{day}: {what}")

    def text(self) -> str:
        lines = [
            f"chaos soak  seed={self.seed}  days={self.days}  quantity={self.quantity}"
            f"  ({self.seconds:.0f} s)",
            f"faults: {sum(self.faults.values())}  "
            + "  ".join(f"{k}={v}" for k, v in sorted(self.faults.items())),
        ]
        if self.waiting:
            lines.append("faults waiting for their engine issue (not drawn): " + "; ".join(
                f"{k} -> {v}" for k, v in sorted(self.waiting.items())))
        if self.skipped:
            lines.append("faults not applied (gateway down at the time): "
                         + "  ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())))
        lines += [
            f"kills: {self.kills} (kill -9 of the engine; integrity_check after each)",
            f"checks: {sum(self.checks.values())}  "
            + "  ".join(f"{k}={v}" for k, v in sorted(self.checks.items())),
            "entries: " + "  ".join(f"{k}={v}" for k, v in sorted(self.entries.items())),
            "lots: " + "  ".join(f"{k}={v}" for k, v in sorted(self.lots.items())),
            f"contracts sold: {self.contracts_sold} (quantity {self.quantity})",
            f"alerts delivered: {self.alerts_delivered} (+{self.crash_alerts} process_crashed"
            " from the supervisord listener)"
            + (f"; sent again after a kill -9 hit their delivery (same id):"
               f" {self.redelivered_after_kill}" if self.redelivered_after_kill else ""),
            "alert kinds: " + "  ".join(f"{k}={v}" for k, v in sorted(self.alert_kinds.items())),
            f"invariant samples: {self.samples}; worst naked short: {self.worst_naked:.1f} s"
            f" while the engine could act (limit {NAKED_LIMIT:.0f} s),"
            f" {self.worst_naked_wall:.1f} s counting outages and kills",
        ]
        if self.violations:
            lines.append(f"VIOLATIONS: {len(self.violations)}")
            lines += [f"  - {v}" for v in self.violations]
            lines.append(f"replay: make soak SEED={self.seed} DAYS={self.days}"
                         f" QUANTITY={self.quantity}")
        else:
            lines.append("violations: none")
        return "\n".join(lines)

    def as_json(self) -> str:
        return json.dumps({
            "seed": self.seed, "days": self.days, "faults": dict(self.faults),
            "kills": self.kills, "checks": dict(self.checks), "violations": self.violations,
            "entries": dict(self.entries), "lots": dict(self.lots),
            "waiting": self.waiting, "skipped": dict(self.skipped),
            "alerts_delivered": self.alerts_delivered, "alert_kinds": dict(self.alert_kinds),
            "seconds": round(self.seconds, 1), "quantity": self.quantity,
            "contracts_sold": self.contracts_sold,
            "samples": self.samples, "worst_naked": round(self.worst_naked, 1),
            "worst_naked_wall": round(self.worst_naked_wall, 1),
            "redelivered_after_kill": self.redelivered_after_kill,
        }, sort_keys=True)


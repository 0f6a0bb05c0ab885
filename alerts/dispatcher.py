"""Alerts: webhook formats, signatures, and a dispatcher that never blocks an actor.

`raise_alert` writes the alert and its outbox rows to SQLite and wakes the
dispatcher thread; nothing else happens on the caller's thread. Each webhook
target is its own queue, delivered strictly in order with exponential backoff,
so a target that is down holds back only its own alerts and receives every one,
once, in order, when it returns (they survive an engine restart too).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from loguru import logger

from alerts.outbox import AlertStore
from book.alert_rows import AlertRow
from config.loader import Config, WebhookConfig
from ops.backoff import Backoff
from ops.logs import redact

SECRET_ENV = "TRADING_BOT_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Signature-256"


def _title(alert: dict[str, Any]) -> str:
    count = int(alert.get("count") or 1)
    suffix = f" (x{count})" if count > 1 else ""
    return f"trading-bot {alert['severity'].upper()}: {alert['kind']}{suffix}"


def format_payload(alert: dict[str, Any], fmt: str, url: str = "") -> dict[str, Any]:
    """The JSON body for one webhook format: json, slack, discord or ntfy."""
    when = datetime.fromtimestamp(alert["time"], UTC).isoformat()
    count = int(alert.get("count") or 1)
    text = f"{_title(alert)}\n{alert['message']}"
    if fmt == "slack":
        return {"text": text}
    if fmt == "discord":
        return {"content": text[:2000]}
    if fmt == "ntfy":
        topic = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or "trading-bot"
        priority = {"info": 3, "warning": 4, "error": 5, "critical": 5}.get(alert["severity"], 3)
        return {"topic": topic, "title": _title(alert), "message": alert["message"],
                "priority": priority, "tags": [alert["kind"], alert["severity"]]}
    return {
        "id": alert["id"], "kind": alert["kind"], "severity": alert["severity"],
        "message": alert["message"], "time": when, "count": count,
        "last_time": datetime.fromtimestamp(alert.get("last_time") or alert["time"], UTC)
        .isoformat(),
        "details": alert.get("details") or {},
    }


def post_url(url: str, fmt: str) -> str:
    """ntfy takes its JSON form at the server root; the others at the URL as given."""
    if fmt != "ntfy":
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/", "", ""))


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def target_hash(hook: WebhookConfig) -> str:
    """Identifies a target in the outbox without storing its (secret) URL."""
    return hashlib.sha256(f"{hook.format}|{hook.url}".encode()).hexdigest()[:16]


class PermanentDeliveryError(RuntimeError):
    """The target answered that it will never take this alert (a 4xx other than 408/429)."""


def coalesce_key(details: dict[str, Any] | None) -> str:
    """Alerts of one kind fold together only when they are about the same thing: the
    same lot, else the same contract (two lots left unprotected are two alerts)."""
    d = details or {}
    if d.get("lot_id") is not None:
        return f"lot:{d['lot_id']}"
    if d.get("con_id") is not None:
        return f"con:{d['con_id']}"
    return ""


def deliver(hook: WebhookConfig, alert: dict[str, Any], timeout: float) -> None:
    """POST one alert; raises on anything but a 2xx answer."""
    body = json.dumps(format_payload(alert, hook.format, hook.url)).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "trading-bot-alerts/1"}
    secret = os.environ.get(SECRET_ENV)
    if secret:
        headers[SIGNATURE_HEADER] = signature(body, secret)
    req = urllib.request.Request(post_url(hook.url, hook.format), data=body, headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if not 200 <= resp.status < 300:
                raise RuntimeError(f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        # 408/429 say "later"; any other 4xx says this request will never be taken.
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise PermanentDeliveryError(f"HTTP {exc.code} {exc.reason}") from exc
        raise


class AlertDispatcher:
    def __init__(self, cfg: Config, store_path: str | None = None) -> None:
        self.cfg = cfg
        self.hooks = list(cfg.alerts.webhooks)
        self.hashes = [target_hash(h) for h in self.hooks]
        self.store = AlertStore(store_path or cfg.storage.path, self.hashes)
        self._wake = threading.Condition()
        self._stop = False
        self._threads: list[threading.Thread] = []
        self.log = logger.bind(actor="alerts")

    def start(self) -> None:
        for i, hook in enumerate(self.hooks):
            t = threading.Thread(target=self._run_target, args=(i, hook), daemon=True,
                                 name=f"alerts-{i}")
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        for t in self._threads:
            t.join(timeout)
        self.store.close()

    def raise_alert(self, kind: str, message: str, severity: str = "warning",
                    details: dict[str, Any] | None = None) -> int:
        message = redact(message)
        alert_id, folded = self.store.add(
            str(kind), message, severity, details,
            coalesce_window=self.cfg.alerts.coalesce_window,
            coalesce_key=coalesce_key(details),
        )
        log = self.log.opt(depth=1)
        if folded:
            log.info("alert {} {} repeated (folded into #{}): {}", kind, severity, alert_id,
                     message)
        else:
            log.warning("ALERT #{} {} [{}]: {}", alert_id, kind, severity, message)
        with self._wake:
            self._wake.notify_all()
        return alert_id

    def prepare(self, kind: str, message: str, severity: str = "warning",
                details: dict[str, Any] | None = None) -> AlertRow:
        """An alert for the book to write in the same transaction as the change it
        announces (book/alert_rows.py); `announced` then logs it and wakes delivery."""
        return AlertRow(str(kind), redact(message), severity, dict(details or {}),
                        tuple(self.hashes), self.cfg.alerts.coalesce_window,
                        coalesce_key(details))

    def announced(self, alert_id: int, folded: bool, row: AlertRow) -> None:
        log = self.log.opt(depth=1)
        if folded:
            log.info("alert {} {} repeated (folded into #{}): {}", row.kind, row.severity,
                     alert_id, row.message)
        else:
            log.warning("ALERT #{} {} [{}]: {}", alert_id, row.kind, row.severity,
                        row.message)
        with self._wake:
            self._wake.notify_all()

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.store.recent(limit)

    def delivery_status(self) -> list[dict[str, Any]]:
        """Per webhook target (format, never the URL): pending, parked, last error."""
        if not self.hooks:
            return []
        rows = {r["target"]: r for r in self.store.delivery_status()}
        return [{"target": i, "format": hook.format,
                 **{k: v for k, v in rows.get(i, {"pending": 0, "parked": 0,
                                                  "last_error": None}).items()
                    if k != "target"}}
                for i, hook in enumerate(self.hooks)]

    def _run_target(self, index: int, hook: WebhookConfig) -> None:
        retry = Backoff(self.cfg.alerts.retry_initial, self.cfg.alerts.retry_max)
        while True:
            with self._wake:
                if self._stop:
                    return
            try:
                wait = self._deliver_next(index, hook, retry)
            except Exception as exc:  # e.g. the book locked past its busy timeout
                self.log.error("alert outbox of webhook {}: {}; trying again", index, exc)
                wait = min(5.0, retry.delay)
            if wait <= 0:
                continue
            with self._wake:
                if self._stop:
                    return
                self._wake.wait(min(wait, 5.0))

    def _deliver_next(self, index: int, hook: WebhookConfig, retry: Backoff) -> float:
        """Send this target's oldest pending alert if it is due; the seconds to wait
        before the next look (0: look again at once)."""
        alert = self.store.next_pending(self.hashes[index])
        if alert is None:
            return 5.0
        due = alert["next_attempt_at"] - time.time()
        if due > 0:
            return due
        shown = redact(hook.url)
        try:
            deliver(hook, alert, self.cfg.alerts.timeout)
        except PermanentDeliveryError as exc:
            self.store.mark_parked(alert["outbox_id"], redact(str(exc)))
            self.log.error("webhook {} ({}) refused alert #{} for good: {}; parked"
                           " (see status alert_delivery), the queue goes on",
                           index, shown, alert["id"], redact(str(exc)))
            return 0.0
        except Exception as exc:  # URLError, OSError, http.client.HTTPException, ...
            self.store.mark_failed(alert["outbox_id"], time.time() + retry.delay,
                                   redact(str(exc) or type(exc).__name__))
            self.log.warning("webhook {} ({}) failed for alert #{}: {}; retry in"
                             " {:.0f}s", index, shown, alert["id"],
                             redact(str(exc) or type(exc).__name__), retry.delay)
            retry.grow()
            return 0.0
        self.store.mark_delivered(alert["outbox_id"])
        retry.reset()
        return 0.0

"""Issue 18: redaction covers the whole written line, the exception text and locals too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from ops.logs import setup_logging

HOOK = "https://hooks.slack.com/services/T0001/B0002/Zq9xTOKENinPATH"
LOCAL = "https://discord.com/api/webhooks/123/LOCALtokenXYZ"


@pytest.fixture
def restore_loguru() -> Iterator[None]:
    yield
    logger.remove()  # setup_logging replaced the handlers: leave a plain stderr one
    import sys

    logger.add(sys.stderr)


def _fail(url: str) -> None:
    token_url = LOCAL  # a local a diagnose=True traceback would print  # noqa: F841
    raise RuntimeError(f"webhook post to {url} failed with password=sw0rdfish-99")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_exception_text_and_locals_reach_no_sink(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], restore_loguru: None, fmt: str
) -> None:
    setup_logging("test", str(tmp_path), "INFO", fmt)
    try:
        _fail(HOOK)
    except RuntimeError:
        logger.exception("delivery failed")
    try:
        _fail(HOOK)
    except RuntimeError as exc:
        logger.opt(exception=exc).error("again for {}", HOOK)
    logger.complete()  # the file sink is enqueued
    stdout = capfd.readouterr().out
    written = (tmp_path / "test.log").read_text()
    for text in (stdout, written):
        assert "delivery failed" in text and "RuntimeError" in text  # the traceback is there
        assert "_fail" in text  # with its frames
        for secret in ("Zq9xTOKENinPATH", "LOCALtokenXYZ", "sw0rdfish-99", "T0001/B0002"):
            assert secret not in text, (secret, text)
    if fmt == "json":
        rows = [json.loads(line) for line in written.splitlines()]
        assert rows[0]["message"] == "delivery failed" and "RuntimeError" in rows[0]["exception"]
        assert {r["process"] for r in rows} == {"test"}


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    from config.loader import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('[logging]\nformat = "xml"\n')
    with pytest.raises(ConfigError, match=r"logging\.format"):
        load_config(cfg, environ={})


def test_a_secret_set_after_the_first_line_is_still_redacted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment's secret variables are looked for once, not on every field of
    every line (0.4 ms a JSON line): a variable added later or changed in place is still
    masked, and one replaced by another name once forget_secret_values has run."""
    from ops.logs import forget_secret_values, redact

    monkeypatch.delenv("TRADING_BOT_TEST_TOKEN", raising=False)
    assert redact("sent with q1w2e3r4t5") == "sent with q1w2e3r4t5"
    monkeypatch.setenv("TRADING_BOT_TEST_TOKEN", "q1w2e3r4t5")
    assert redact("sent with q1w2e3r4t5") == "sent with ***"
    monkeypatch.setenv("TRADING_BOT_TEST_TOKEN", "z9x8c7v6b5")  # in place: same size
    assert redact("sent with z9x8c7v6b5 q1w2e3r4t5") == "sent with *** q1w2e3r4t5"
    # One secret variable replaced by another name, the count unchanged: found once the
    # names are looked for afresh (setup_logging does it).
    monkeypatch.delenv("TRADING_BOT_TEST_TOKEN")
    monkeypatch.setenv("TRADING_BOT_OTHER_SECRET", "p0o9i8u7y6")
    forget_secret_values()
    assert redact("sent with p0o9i8u7y6") == "sent with ***"

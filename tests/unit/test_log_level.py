"""bgpd/log.py rule 1: the level changes at run time, even for loggers already used."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from bgpd import log


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    log.configure_logging("info", "json", out)
    yield out
    structlog.reset_defaults()
    log._configured = None
    log.set_level("info")


def _events(out: io.StringIO) -> list[tuple[str, str]]:
    return [(e["level"], e["event"]) for e in map(json.loads, out.getvalue().splitlines())]


def test_a_used_logger_follows_the_level_set_later(stream: io.StringIO) -> None:
    logger = structlog.get_logger("bgpd.test")
    logger.debug("hidden")
    logger.info("shown")
    assert log.set_level("Debug") is True  # Calico's spelling, from logSeverityScreen
    assert log.set_level("debug") is False
    logger.debug("now shown %s", "too")
    log.set_level("warning")
    logger.info("hidden again")
    logger.warning("a warning")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    assert _events(stream)[:4] == [
        ("info", "shown"),
        ("debug", "now shown too"),
        ("warning", "a warning"),
        ("error", "failed"),
    ]
    assert "RuntimeError: boom" in stream.getvalue()


def test_none_silences_everything(stream: io.StringIO) -> None:
    logger = structlog.get_logger("bgpd.test")
    log.set_level("none")
    logger.critical("not even this")
    assert stream.getvalue() == ""


def test_an_unknown_level_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'verbose'"):
        log.set_level("verbose")

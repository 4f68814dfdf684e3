"""Logging: structlog, JSON lines by default, console rendering for people.

Rules:
1. Configure once, before the first log call (deps-eval.md §4: with
   ``cache_logger_on_first_use`` a later ``configure`` does not reach loggers already used).
   ``configure_logging`` is idempotent for the same settings; called again with other settings
   it reconfigures, which reaches only loggers not used yet (tests use ``capture_logs``).
   The level alone can change at run time (``set_level``, for the datastore's
   ``logSeverityScreen``): every logger compares each call with the process's current level,
   one integer comparison, so a DEBUG line below it costs no event building.
2. Levels are Python's names plus BIRD's and Calico's spellings (``BGP_LOGSEVERITYSCREEN``):
   ``debug``, ``info``, ``warning``/``warn``, ``error``, ``critical``/``fatal``/``panic``,
   ``none``/``off`` (nothing at all). Case does not matter; anything else is a ``ValueError``
   naming the value.
3. Format ``json`` (default), ``console``, or ``auto`` (console when the stream is a terminal).
4. Session changes are one INFO line each (``session_state_changed``) with a stable ``reason``
   token; per-message detail (UPDATEs received and sent, with prefix counts) is DEBUG only,
   as BIRD's ``debug all`` under Calico's ``logSeverityScreen: Debug``. Per-peer context
   travels in contextvars (``peer_context``), which stay inside the task that bound them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import structlog

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
    "none": logging.CRITICAL + 10,
    "off": logging.CRITICAL + 10,
}
FORMATS = ("json", "console", "auto")

_configured: tuple[str, int] | None = None
_level = logging.INFO


class _LevelGatedLogger(structlog.BoundLoggerBase):
    """Rule 1: a bound logger that checks the current level at each call."""

    def _at(self, level: int, method: str, event: str, args: tuple[Any, ...], kw: Any) -> Any:
        if level < _level:
            return None
        if args:
            event = event % args
        return self._proxy_to_logger(method, event, **kw)

    def debug(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._at(logging.DEBUG, "debug", event, args, kw)

    def info(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._at(logging.INFO, "info", event, args, kw)

    def warning(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._at(logging.WARNING, "warning", event, args, kw)

    warn = warning

    def error(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._at(logging.ERROR, "error", event, args, kw)

    def critical(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._at(logging.CRITICAL, "critical", event, args, kw)

    fatal = critical

    def exception(self, event: str, *args: Any, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self._at(logging.ERROR, "error", event, args, kw)


def debug_enabled() -> bool:
    """Whether DEBUG lines are written now: for detail that costs something to gather."""
    return _level <= logging.DEBUG


def set_level(level: str) -> bool:
    """Rule 1: the process's level from now on; whether it changed. ``ValueError`` (rule 2) for
    an unknown name."""
    global _level
    numeric = parse_level(level)
    changed, _level = numeric != _level, numeric
    return changed


def parse_level(text: str) -> int:
    """A level name (rule 2) to its number."""
    try:
        return LEVELS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"log level {text!r} is not one of {', '.join(sorted(LEVELS))}") from None


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Set up structlog for the process (rules 1-3)."""
    global _configured
    set_level(level)
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    out = stream if stream is not None else sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    key = ("console" if console else "json", id(out))
    if _configured == key:
        return
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=_LevelGatedLogger,
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    _configured = key


def get_logger(name: str) -> Any:
    """A logger named ``name`` (bound lazily, so it follows ``configure_logging``)."""
    return structlog.get_logger(name)


@contextlib.contextmanager
def peer_context(name: str, peer_ip: str) -> Iterator[None]:
    """Bind ``peer`` and ``peer_ip`` to every log line of the current task (rule 4)."""
    with structlog.contextvars.bound_contextvars(peer=name, peer_ip=peer_ip):
        yield


def session_state_changed(
    logger: Any, peer: str, old: str, new: str, reason: str, **detail: object
) -> None:
    """The one INFO line per session state change (rule 4)."""
    logger.info(
        "session state changed", peer=peer, old_state=old, new_state=new, reason=reason, **detail
    )

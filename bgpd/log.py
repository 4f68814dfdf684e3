"""Logging setup (placeholder until the operator surface lands)."""

from __future__ import annotations

import logging

import structlog


def configure_logging(level: str, fmt: str) -> None:
    numeric = logging.CRITICAL + 10 if level == "none" else getattr(logging, level.upper())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )

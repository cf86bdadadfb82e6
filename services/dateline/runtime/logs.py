"""structlog set-up: JSON lines for machines, coloured key=value on a terminal."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(level: str | None = None, *, json: bool | None = None, default: str = "info") -> None:
    """Call once per process, from an entry point; libraries only get loggers.
    `default`: the level when neither `level` nor DATELINE_LOG_LEVEL says one."""
    level = (level or os.environ.get("DATELINE_LOG_LEVEL") or default).upper()
    if json is None:
        json = os.environ.get("DATELINE_LOG_FORMAT") == "json" or not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )

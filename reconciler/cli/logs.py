"""structlog set up for the CLI: JSON events on stderr, or only warnings for people."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(log_format: str) -> None:
    if log_format == "json":
        processors: list[structlog.typing.Processor] = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(sort_keys=True),
        ]
        level = logging.INFO
    else:
        processors = [
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ]
        level = logging.WARNING
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )

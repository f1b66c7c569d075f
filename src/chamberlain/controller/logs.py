"""Structured JSON logs for the controller: structlog for our events, and the standard library's records (the
triggers log through ``logging``) rendered by the same JSON processor chain, one object per line on stderr.

Events name secrets, runs, stages and outcomes. Values never reach a log call: the workflow holds none in its
records, and the error texts the loop logs are our own (``ChamberlainError`` messages carry names, never data;
a run's ``last_error`` is scrubbed of the values its step held).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure(level: str = "INFO", stream: TextIO | None = None, json: bool = True) -> None:
    """Route structlog and stdlib logging to one JSON (or console) renderer on ``stream`` (stderr)."""
    renderer: Any = structlog.processors.JSONRenderer(sort_keys=True) if json else structlog.dev.ConsoleRenderer()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "kubernetes", "hvac"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*_SHARED, structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get(name: str = "chamberlain.controller") -> Any:
    return structlog.get_logger(name)


__all__ = ["configure", "get"]

"""structlog set-up: lines for people on a terminal, one JSON object a line for machines.

`--log_format=auto` (the default) picks by where stderr goes: a terminal gets structlog's
console renderer (time, level, event, key=value), a pipe or file gets JSON, which log
shippers parse. `json` or `console` forces one.

Each line is one `write` (structlog's WriteLogger: the message and its newline together).
With `--workers` the engine and its front-ends share stderr, and with PYTHONUNBUFFERED=1
(as deploy/Dockerfile sets) a `print` writes the message and the newline separately, so
two processes' lines could run into one another and break a log shipper's JSON.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from pyserving.engine.request_scope import merge_request_scope

LOG_FORMATS = ("auto", "json", "console")


def resolve_format(fmt: str, stream: TextIO | None = None) -> str:
    """`json` or `console`: `auto` is console when `stream` (stderr) is a terminal."""
    if fmt != "auto":
        return fmt
    stream = sys.stderr if stream is None else stream
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # closed or not a real stream
        return "json"


def configure_logging(fmt: str = "json", level: str = "info") -> None:
    fmt = resolve_format(fmt)
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    rename: structlog.typing.Processor = (
        structlog.processors.EventRenamer("message") if fmt == "json" else _identity
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            merge_request_scope,  # the request's id, api and model, read only when writing
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            rename,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _identity(
    logger: object, name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    return event_dict

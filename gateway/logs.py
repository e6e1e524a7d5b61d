"""structlog set-up for the gateway: one event per thing that happened, JSON lines in
production, pretty on a terminal, phone numbers masked in every line."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# A run of 6+ digits (optionally with a leading +) looks like a phone number: mask all but
# the last 3 digits. Message ids are hex with letters or far longer; counts are short.
_NUMBER = re.compile(r"(?<![0-9A-Za-z])\+?\d{6,15}(?![0-9A-Za-z])")
_SECRET_KEYS = frozenset({"password", "api_key", "authorization", "secret"})


def mask_number(m: re.Match[str]) -> str:
    s = m.group(0)
    return re.sub(r"\d", "*", s[:-3]) + s[-3:]


def mask_text(value: str) -> str:
    return _NUMBER.sub(mask_number, value)


def _mask(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key in _SECRET_KEYS:
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = mask_text(value)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value):
            event[key] = [mask_text(v) if isinstance(v, str) else v for v in value]
    return event


def configure(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(out, "isatty", lambda: False)() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )

"""structlog set-up shared by the gateway and the simulator: one event per thing that
happened, JSON lines in production, pretty on a terminal, phone numbers masked in every
line and secrets never written.

Masking, in every event:
- values of address keys (`to`, `source`, `destination_addr`, ...): every digit but the
  last three becomes '*' ("+491701234567" -> "+*********567", "12345" -> "**345"; an
  alphanumeric sender such as "Acme" has no digits and stays);
- any other string: runs of 6-15 digits (a phone number inside a message or an error) are
  masked the same way; message ids are hex with letters or far longer and stay readable;
- secret keys (`password`, `api_key`, `authorization`, `secret`) become "***".

A leaf module (structlog only): the simulator uses it too, without touching the gateway's
business layers.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_NUMBER = re.compile(r"(?<![0-9A-Za-z])\+?\d{6,15}(?![0-9A-Za-z])")
_DIGIT = re.compile(r"\d")
SECRET_KEYS = frozenset({"password", "api_key", "authorization", "secret"})
ADDRESS_KEYS = frozenset(
    {
        "to",
        "from_",
        "msisdn",
        "source",
        "destination",
        "dest",
        "recipient",
        "source_addr",
        "destination_addr",
    }
)


def mask_number(value: str) -> str:
    """Every digit but the last three becomes '*' (three digits or fewer: all of them)."""
    digits = sum(c.isdigit() for c in value)
    to_mask = digits - 3 if digits > 3 else digits
    out = []
    for c in value:
        if c.isdigit() and to_mask > 0:
            out.append("*")
            to_mask -= 1
        else:
            out.append(c)
    return "".join(out)


def mask_text(value: str) -> str:
    """Mask phone-number-like digit runs inside free text."""
    return _NUMBER.sub(lambda m: mask_number(m.group(0)), value)


def mask_event(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor applying the rules above."""
    for key, value in event.items():
        if key in SECRET_KEYS:
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = mask_number(value) if key in ADDRESS_KEYS else mask_text(value)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value):
            event[key] = [mask_text(v) if isinstance(v, str) else v for v in value]
    return event


def configure(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """fmt: "json", "console" (alias "pretty"), or "auto" (console on a terminal)."""
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
            mask_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)

"""Phone-number masking for log lines: every digit but the last three becomes '*'.

Alphanumeric sender names ("Acme") carry no digits and pass unchanged; "+491701234567"
becomes "+*********567". Numbers of three digits or fewer are masked entirely.
"""

from __future__ import annotations

from typing import Any

# Event keys whose values are addresses; the structlog processor masks these.
ADDRESS_KEYS = frozenset(
    {"source_addr", "destination_addr", "msisdn", "source", "destination", "to", "from_", "dest"}
)


def mask_number(value: str) -> str:
    digits = sum(c.isdigit() for c in value)
    if digits == 0:
        return value
    keep = 3 if digits > 3 else 0
    to_mask = digits - keep
    out = []
    for c in value:
        if c.isdigit() and to_mask > 0:
            out.append("*")
            to_mask -= 1
        else:
            out.append(c)
    return "".join(out)


def mask_addresses(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask the address-valued keys of every event."""
    for key in ADDRESS_KEYS.intersection(event):
        value = event[key]
        if isinstance(value, str):
            event[key] = mask_number(value)
    return event

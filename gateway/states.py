"""Message states and the one table of allowed transitions.

accepted -> queued -> submitting -> submitted -> delivered | undeliverable | expired |
rejected | failed, plus `held` (blocked by a switch or a channel outage, resumes later) and
`unknown` (the process died while the message was with the SMSC and the channel's recovery
policy says not to risk a duplicate).
"""

from __future__ import annotations

import enum



class State(str, enum.Enum):
    ACCEPTED = "accepted"
    QUEUED = "queued"
    HELD = "held"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"


FINAL = frozenset(
    {State.DELIVERED, State.UNDELIVERABLE, State.EXPIRED, State.REJECTED, State.FAILED, State.UNKNOWN}
)

_S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    _S.ACCEPTED: frozenset({_S.QUEUED, _S.HELD, _S.REJECTED, _S.FAILED, _S.EXPIRED}),
    _S.QUEUED: frozenset({_S.SUBMITTING, _S.HELD, _S.REJECTED, _S.FAILED, _S.EXPIRED}),
    _S.HELD: frozenset({_S.QUEUED, _S.REJECTED, _S.FAILED, _S.EXPIRED}),
    # submitting -> queued: a retryable refusal or a lost bind sends it back to the queue.
    _S.SUBMITTING: frozenset(
        {_S.SUBMITTED, _S.QUEUED, _S.HELD, _S.REJECTED, _S.FAILED, _S.EXPIRED, _S.UNKNOWN}
    ),
    # Receipts decide the end; a late receipt may still turn `expired`/`unknown` into news.
    _S.SUBMITTED: frozenset(
        {_S.DELIVERED, _S.UNDELIVERABLE, _S.EXPIRED, _S.REJECTED, _S.FAILED, _S.UNKNOWN}
    ),
    _S.DELIVERED: frozenset(),
    _S.UNDELIVERABLE: frozenset(),
    _S.EXPIRED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.FAILED: frozenset(),
    _S.UNKNOWN: frozenset({_S.DELIVERED, _S.UNDELIVERABLE, _S.EXPIRED, _S.REJECTED}),
}


def can_move(old: State, new: State) -> bool:
    return new in TRANSITIONS[old]

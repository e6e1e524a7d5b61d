"""Bounded memory of accepted messages, for query_sm, cancel_sm, replace_sm and receipts.

A ring of 2**k slots indexed by the message id's integer: storing is one list assignment,
the oldest message is forgotten when its slot is reused, memory is bounded by construction.
Records are msgspec Structs with gc=False (no cycles), so a full ring costs the garbage
collector nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.smpp.constants import MessageState

ENROUTE = int(MessageState.ENROUTE)
STAT_STATE = {
    "DELIVRD": int(MessageState.DELIVERED),
    "EXPIRED": int(MessageState.EXPIRED),
    "DELETED": int(MessageState.DELETED),
    "UNDELIV": int(MessageState.UNDELIVERABLE),
    "ACCEPTD": int(MessageState.ACCEPTED),
    "UNKNOWN": int(MessageState.UNKNOWN),
    "REJECTD": int(MessageState.REJECTED),
}


class Record(msgspec.Struct, gc=False):
    n: int  # integer of the message id (the ring slot key)
    id: str  # the id string as sent in the resp and the receipt
    account: str
    pdu: Any  # the submit_sm / submit_multi / data_sm as received
    submitted: float  # wall clock (time.time()) of acceptance
    stat: str  # outcome decided at acceptance, reported when final
    receipt: bool = False  # a receipt is to be sent when final
    copies: int = 1  # receipts sent per destination (2 with the duplicate_receipts fault)
    state: int = ENROUTE
    done: float = 0.0  # wall clock of the final state
    short_message: bytes | None = None  # replace_sm's new text (None: the pdu's)
    dests: list | None = None  # submit_multi: (ton, npi, address) that were accepted


class MessageStore:
    __slots__ = ("mask", "ring", "size")

    def __init__(self, capacity: int) -> None:
        size = 1
        while size < capacity:
            size <<= 1
        self.size = size
        self.mask = size - 1
        # put() is `ring[n & mask] = rec` (inlined on the submit_sm hot path)
        self.ring: list[Record | None] = [None] * size

    def put(self, rec: Record) -> None:
        self.ring[rec.n & self.mask] = rec

    def get(self, n: int) -> Record | None:
        rec = self.ring[n & self.mask]
        return rec if rec is not None and rec.n == n else None

    def records(self):
        """Every remembered record (oldest slots first in ring order); for rare scans."""
        return (r for r in self.ring if r is not None)

"""submit_sm read through a learned shape: the strict decoder's answer without running it.

A gateway's submit_sm differ mostly in the destination: a batch request sends one text from
one sender to many recipients, and its PDUs (gateway.submission.SubmitTemplates) are one
template cut around the destination. The simulator's connection (`Connection`) decodes a
submit_sm with the codec's strict decoder and, when it carries no TLVs, remembers its body
cut the same way (`learn`): the octets before the destination (service_type, the source
address and the TON/NPI of both) and after the destination's NUL (esm_class ..
short_message, to the end of the body). A later submit_sm whose body starts with the same
octets, continues with a destination that the strict decoder takes (a NUL within 21 octets),
and ends with the same octets, exactly to the end of its frame, decodes to the remembered
PDU with that destination: every field before and after it is parsed from identical octets
at identical distances from the body's start and end, so the strict decoder would read the
same values and accept it the same way (tests/test_simulator_shapes.py checks this against
the decoder on arbitrary and mutated bodies). Anything else is decoded strictly, and what
the decoder refuses is answered by the session as before.

The submit_sm PDU a shape gives is `msgspec.structs.replace` of the remembered one (its
sequence number, destination and an empty TLV list of its own): no field is parsed.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId
from gateway.smpp.errors import PduError
from simulators.smsc.store import STAT_STATE

_DECODE_SUBMIT_SM = P.DECODERS[int(CommandId.SUBMIT_SM)]
_replace = msgspec.structs.replace
# As the session's in-place decoding: a body read inside a longer buffer fails these ways.
_DECODE_FAILURES = (PduError, IndexError, struct.error)
_DEST_LIMIT = 21  # destination_addr: a C-Octet String of at most 21 octets with its NUL
# The TLV list of every PDU a shape reads (a shape has none): one list shared by all of
# them, never changed (nothing in the simulator changes a received PDU's TLVs). A list of
# its own per message, kept with its record in the message store, was most of what the
# cyclic GC walked (~50,000 lists per gen-0 collection in the batch benchmark).
_NO_TLVS: list = []


class SubmitShape:
    """One submit_sm body (no TLVs) cut around its destination. On its first use
    (`prepare`, not when learned: a gateway sending a different text each time learns a
    shape per message and uses none) it takes from the account's receipt policy the receipt
    format of its messages (`ReceiptPolicy.shape_format`, None: `encoded()` decides) and
    the outcome when it is fixed."""

    __slots__ = (
        "fixed", "head", "hlen", "pdu", "rd", "ready", "receipt", "stat", "state", "tail", "tlen",
        "used", "want",
    )

    def __init__(self, pdu: Any, head: bytes, tail: bytes) -> None:
        self.pdu = pdu  # the PDU it was learned from (received PDUs are never changed)
        self.head = head
        self.hlen = len(head)
        self.tail = tail
        self.tlen = len(tail)
        self.used = False  # it read a submit_sm
        self.ready = False  # prepared

    def prepare(self, policy: Any) -> None:
        pdu = self.pdu
        self.rd = rd = pdu.registered_delivery & 3
        receipt = policy.shape_format(pdu)
        self.receipt, self.fixed = receipt if receipt is not None else (None, 0)
        # The outcome when the policy draws none (one weighted stat, no prefix rules): the
        # stat, whether a receipt is wanted, the final message_state.
        self.stat = stat = policy.fixed_outcome
        self.want = policy.wants[stat][rd] if stat is not None else False
        self.state = STAT_STATE[stat] if stat is not None else 0
        self.ready = True

    def decode(self, b: bytes, p: int, end: int, seq: int) -> tuple[bytes, Any] | None:
        """The submit_sm whose body is b[p:end] (header status 0, sequence number `seq`) if
        it has this shape: (its destination's octets, the PDU the strict decoder gives).
        None: not this shape (nothing is said about its validity)."""
        if not b.startswith(self.head, p):
            return None
        p += self.hlen
        lim = p + _DEST_LIMIT
        i = b.find(0, p, lim if lim < end else end)
        if i < 0 or end - i - 1 != self.tlen or not b.startswith(self.tail, i + 1):
            return None
        raw = b[p:i]
        self.used = True
        return raw, _replace(
            self.pdu, sequence_number=seq, destination_addr=raw.decode("latin-1"), tlvs=_NO_TLVS
        )


def learn(b: bytes, p: int, end: int, seq: int) -> tuple[Any, SubmitShape | None]:
    """Decode the submit_sm whose body is b[p:end] (header status 0) with the strict decoder.
    Returns (None, None) when it refuses it (the session then decodes the frame and answers
    the error), else (the PDU, its shape, or None when it has TLVs)."""
    try:
        pdu = _DECODE_SUBMIT_SM(b, p, end, 0, seq)
    except _DECODE_FAILURES:
        return None, None
    if pdu.tlvs:
        return pdu, None
    # The C-strings are Latin-1: one octet per character.
    hlen = len(pdu.service_type) + len(pdu.source_addr) + 6
    return pdu, SubmitShape(pdu, b[p : p + hlen], b[p + hlen + len(pdu.destination_addr) + 1 : end])

"""The reading of the usual TLVs by position (receipted_message_id, its NUL last, then
message_state, ending the body; receipt.read_receipt_outcome, which `check` runs with
pdu.read_receipt): the same as read_receipt's loop's and the strict decoder's,
and any other layout around it (one octet changed, lengths off by one, the TLVs swapped,
something after them, a body that ends early) read as the strict decoder reads it."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp import pdu as P
from tests.test_receipt_reads import (
    _AFTER,
    FUZZ,
    MS,
    NEC,
    RMI,
    TEXT,
    _tlv,
    check,
    frame,
)

# A receipt body up to its TLVs: service_type, addresses, esm_class 0x04, no times.
HEAD = b"\0\1\1" + b"4915112345678\0" + b"\1\1Acme\0" + b"\x04\0\0\0\0\0\1\0\0"


def body(sm: bytes, tlvs: bytes) -> bytes:
    return HEAD + bytes([len(sm)]) + sm + tlvs


SM = TEXT.format("1f", "DELIVRD", "000").encode()


def test_the_usual_tlvs_are_read_by_position() -> None:
    b = frame(body(SM, _tlv(RMI, b"1f\0") + _tlv(MS, b"\2")))
    assert check(b) == (7, 4, SM, "1f", 2)
    assert check(b, b"\0\x04\x27\0\1\3") == (7, 4, SM, "1f", 2)  # what follows is not read


def test_edges_of_the_usual_layout_read_as_the_strict_decoder_reads_them() -> None:
    cases = {
        "empty id": _tlv(RMI, b"\0") + _tlv(MS, b"\2"),
        "a NUL inside the id": _tlv(RMI, b"a\0b\0") + _tlv(MS, b"\5"),
        "id of 255 octets": _tlv(RMI, b"7" * 254 + b"\0") + _tlv(MS, b"\2"),
        "id of 256 octets": _tlv(RMI, b"7" * 255 + b"\0") + _tlv(MS, b"\2"),
        "no NUL": _tlv(RMI, b"1f") + _tlv(MS, b"\2"),
        "swapped": _tlv(MS, b"\2") + _tlv(RMI, b"1f\0"),
        "state of 2 octets": _tlv(RMI, b"1f\0") + _tlv(MS, b"\0\2"),
        "state length 1, 2 octets": _tlv(RMI, b"1f\0") + _tlv(MS, b"\0\2", 1),
        "id length one short": _tlv(RMI, b"1f\0", 2) + _tlv(MS, b"\2"),
        "id length one long": _tlv(RMI, b"1f\0", 4) + _tlv(MS, b"\2"),
        "another tag first": _tlv(0x001F, b"1f\0") + _tlv(MS, b"\2"),
        "another tag last": _tlv(RMI, b"1f\0") + _tlv(0x0428, b"\2"),
        "a third TLV": _tlv(RMI, b"1f\0") + _tlv(MS, b"\2") + _tlv(NEC, b"\3\0\1"),
        "a TLV in between": _tlv(RMI, b"1f\0") + _tlv(NEC, b"\3\0\1") + _tlv(MS, b"\2"),
        "a stray octet": _tlv(RMI, b"1f\0") + _tlv(MS, b"\2") + b"\0",
        "state alone": _tlv(MS, b"\2"),
        "short": b"\0\x1e\0\1\0\x04\x27\0\1",
        "nothing but the id": _tlv(RMI, b"123456\0"),
    }
    read = {name: check(frame(body(SM, tlvs))) for name, tlvs in cases.items()}
    assert read["empty id"] == (7, 4, SM, "", 2)
    assert read["a NUL inside the id"] == (7, 4, SM, "a\0b", 5)
    assert read["id of 255 octets"] == (7, 4, SM, "7" * 254, 2)
    assert read["id of 256 octets"] == (7, 4, SM, "7" * 255, 2)  # the loop's
    assert read["swapped"] == (7, 4, SM, "1f", 2)  # the loop's
    assert read["a third TLV"] == read["a TLV in between"] == (7, 4, SM, "1f", 2)
    assert read["no NUL"] is read["state of 2 octets"] is read["short"] is None


_TAIL = st.builds(
    lambda rid, state: _tlv(RMI, rid + b"\0") + _tlv(MS, bytes([state])),
    st.binary(max_size=300),
    st.integers(0, 255),
)


@FUZZ
@given(
    sm=st.one_of(st.just(SM), st.binary(max_size=255)),
    tail=_TAIL,
    changes=st.lists(st.tuples(st.integers(1, 12), st.integers(0, 255)), max_size=2),
    cut=st.integers(0, 3),
    after=_AFTER,
)
def test_the_usual_tail_changed_near_its_edges_reads_as_decoded(
    sm: bytes, tail: bytes, changes: list[tuple[int, int]], cut: int, after: bytes
) -> None:
    """Octets of the two TLV headers and the id's NUL changed, counted from either end of
    the tail, and the body cut short: every reading agrees with the strict decoder."""
    t = bytearray(tail)
    for k, v in changes:
        i = k - 1 if k <= 4 else len(t) - (k - 4)  # the id's header, else from the end
        if 0 <= i < len(t):
            t[i] = v
    b = frame(body(sm, bytes(t[: len(t) - cut])))
    read = check(b, after)
    if not changes and not cut:
        assert read == (7, 4, sm, tail[4:-6].decode("latin-1"), tail[-1])


def test_a_body_ending_in_the_tail_reads_nothing_past_it() -> None:
    """read_receipt given a longer buffer: the tail is found from `end`, not the buffer's."""
    b = frame(body(SM, _tlv(RMI, b"1f\0") + _tlv(MS, b"\2")))
    longer = b + struct.pack(">HHB", MS, 1, 9)
    assert P.read_receipt(longer, 16, len(b), 7) == (7, 4, SM, "1f", 2)
    # the body ends before message_state: the id alone, whatever the buffer holds after
    assert P.read_receipt(b, 16, len(b) - 5, 7) == (7, 4, SM, "1f", None)

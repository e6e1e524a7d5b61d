"""receipt.read_receipt_outcome: a deliver_sm read from the session's buffer straight to its
outcome. The usual receipt (canonical text, then receipted_message_id and message_state by
position) is read without `pdu.read_receipt`; every variation around it gives what the
strict decoder and `receipt_outcome` give, through the fast reading or the general one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp import pdu as P
from gateway.smpp import receipt as R
from gateway.smpp.receipt import read_receipt_outcome, receipt_outcome
from tests.test_receipt_reads import FUZZ, MS, NEC, RMI, TEXT, _tlv, check, frame

# A receipt body up to sm_length: service_type, addresses, esm_class 0x04, no times.
HEAD = b"\0\1\1" + b"4915112345678\0" + b"\1\1Acme\0" + b"\x04\0\0\0\0\0\1\0\0"
SM = TEXT.format("1f", "DELIVRD", "000").encode()


def body(sm: bytes, tlvs: bytes, head: bytes = HEAD) -> bytes:
    return head + bytes([len(sm)]) + sm + tlvs


def usual(sm: bytes = SM, rid: bytes = b"1f", state: int = 2, esm: int = 4) -> bytes:
    head = HEAD[:-9] + bytes([esm]) + HEAD[-8:]
    return frame(body(sm, _tlv(RMI, rid + b"\0") + _tlv(MS, bytes([state])), head))


def test_the_usual_receipt_is_read_without_read_receipt(monkeypatch) -> None:
    b = usual()
    expected = (7, *receipt_outcome(P.decode(b)))

    def declined(*args):  # the general reading: must not be needed
        raise AssertionError("declined to read_receipt")

    monkeypatch.setattr(R.P, "read_receipt", declined)
    assert read_receipt_outcome(b, 16, len(b), 7) == expected
    assert read_receipt_outcome(b + b"\0\x04\x27\0\1\3", 16, len(b), 7) == expected  # not read past end


@pytest.mark.parametrize(
    "b",
    [
        usual(),
        usual(rid=b" "),  # a blank TLV id: the text's
        usual(rid=b"\0"),
        usual(state=0),  # no MessageState has 0: the text's stat
        usual(state=255),
        usual(esm=0x20),  # an intermediate notification
        usual(esm=0x24),
        usual(sm=SM + b"\0\0"),  # trailing NULs are not text
        usual(sm=TEXT.format("", "DELIVRD", "000").encode()),  # not canonical: general reading
        usual(sm=b"stat:DELIVRD id:1f"),
        usual(sm=b""),
        usual(sm=TEXT.format("1f", "bogus", "021").encode()),
        usual(sm=TEXT.replace("text:", "Text:").format("1f", "UNDELIV", "021").encode()),
        usual(rid=b"x" * 200),
        # The text's head completed only by the TLVs after short_message: not canonical.
        usual(sm=TEXT.format("1f", "DELIVRD", "000").encode()[:-17], rid=b"x text:"),
        usual(sm=TEXT.format("1f", "DELIVRD", "000").encode()[:-16], rid=b"text:"),
        usual(sm=TEXT.format("1f", "DELIVRD", "000").encode()[:-12]),  # cut inside "text:"
        frame(body(SM, _tlv(MS, b"\2") + _tlv(RMI, b"1f\0"))),  # the TLVs swapped
        frame(body(SM, _tlv(RMI, b"1f\0") + _tlv(MS, b"\2") + _tlv(NEC, b"\3\0\1"))),  # one more
        frame(body(SM, _tlv(RMI, b"1f\0"))),  # message_state absent
        frame(body(SM, _tlv(RMI, b"1f") + _tlv(MS, b"\2"))),  # no NUL: declined altogether
        frame(body(SM, b"")),  # no TLVs
    ],
)
def test_variations_read_as_receipt_outcome(b: bytes) -> None:
    check(b)  # read_receipt, read_receipt_outcome and receipt_outcome of the strict decoding


@FUZZ
@given(
    rid=st.binary(max_size=70).map(lambda v: v.replace(b"\0", b"1")),
    state=st.integers(0, 255),
    esm=st.integers(0, 255),
    tid=st.sampled_from(["1f", "0A0B", "", " 7 ", "x\0y"]),
    stat=st.sampled_from(["DELIVRD", "UNDELIV", "ENROUTE", "x", ""]),
    err=st.sampled_from(["000", "021", ""]),
    nuls=st.integers(0, 2),
    excerpt=st.binary(max_size=30),
)
def test_usual_layouts_read_as_receipt_outcome(rid, state, esm, tid, stat, err, nuls, excerpt) -> None:
    """The usual layout with any id, state, esm_class and text around the canonical one."""
    sm = (TEXT.format(tid, stat, err).encode() + excerpt + b"\0" * nuls)[:255]
    check(usual(sm, rid, state, esm))

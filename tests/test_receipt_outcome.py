"""receipt_outcome (the gateway's reading of a receipt PDU) against receipt_from_pdu: its
shortcut for the canonical receipt must give exactly what the general reading gives."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag
from gateway.smpp.receipt import receipt_from_pdu, receipt_outcome, receipt_text_of

CORPUS = Path(__file__).parent / "corpus"
PDUS = [json.loads(line) for line in (CORPUS / "pdus.jsonl").read_text().splitlines() if line.strip()]


def _reference(pdu: object) -> tuple | None:
    r = receipt_from_pdu(pdu, details=False)
    if r is None:
        return None
    return (r.message_id, r.state, r.error_code, r.intermediate, receipt_text_of(pdu))


# Mostly values that fit the canonical form (the shortcut), some that break it.
_token = st.text(alphabet="0123456789abcdefXYZ_-:\x00", min_size=1, max_size=12)
_value = st.one_of(_token, _token, _token, st.sampled_from(["", " ", "a b", "1\t2"]))
_date = st.text(alphabet="0123456789", min_size=1, max_size=12)
_digits = st.one_of(_date, _date, _date, st.sampled_from(["", "12a4", " 1"]))


@st.composite
def _texts(draw: st.DrawFn) -> bytes:
    """Receipt texts near the canonical form: values that fit it and values that break it
    (blanks, NULs, letters in dates, empty fields), trailing NULs, Text or text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=60))
    text = (
        f"id:{draw(_value)} sub:{draw(_value)} dlvrd:{draw(_value)} "
        f"submit date:{draw(_digits)} done date:{draw(_digits)} "
        f"stat:{draw(st.sampled_from(['DELIVRD', 'UNDELIV', 'EXPIRED', 'ENROUTE', 'REJECTD', 'x', '', '2']))} "
        f"err:{draw(_value)} {draw(st.sampled_from(['text', 'Text', 'TEXT']))}:{draw(st.text(max_size=10))}"
    )
    return text.encode("latin-1", "replace") + b"\x00" * draw(st.integers(0, 2))


_tlvs = st.lists(
    st.one_of(
        st.builds(P.Tlv, st.just(int(Tag.RECEIPTED_MESSAGE_ID)), st.sampled_from(["", " ", "\x00", "abc", " 12 ", "6000"])),
        st.builds(P.Tlv, st.just(int(Tag.MESSAGE_STATE)), st.sampled_from([*range(10), 255])),
        st.builds(P.Tlv, st.just(int(Tag.NETWORK_ERROR_CODE)), st.binary(min_size=3, max_size=3)),
        st.builds(P.Tlv, st.just(int(Tag.MESSAGE_PAYLOAD)), st.binary(max_size=20)),
        st.builds(P.Tlv, st.just(0x1400), st.binary(max_size=4)),
    ),
    max_size=5,
)


@settings(max_examples=600)
@given(
    sm=_texts(),
    esm=st.one_of(st.sampled_from([0x00, 0x04, 0x08, 0x20, 0x24, 0x40, 0x44]), st.integers(0, 255)),
    tlvs=_tlvs,
)
def test_codec_pdus_read_as_receipt_from_pdu(sm: bytes, esm: int, tlvs: list) -> None:
    pdu = P.DeliverSm(esm_class=esm, short_message=sm[:254], tlvs=tlvs)
    pdu = P.decode(pdu.encode())  # as received: the codec's own values
    assert receipt_outcome(pdu) == _reference(pdu)


@settings(max_examples=300)
@given(
    ident=_token, sub=_token, err=_token, dates=st.tuples(_date, _date),
    stat=st.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "ENROUTE", "x", "2"]),
    esm=st.sampled_from([0x00, 0x04, 0x20, 0x24, 0x08]),
    nuls=st.integers(0, 2),
    tlvs=_tlvs,
)
def test_canonical_texts_take_the_shortcut(
    ident: str, sub: str, err: str, dates: tuple, stat: str, esm: int, nuls: int, tlvs: list
) -> None:
    from gateway.smpp.receipt import _outcome_match

    text = f"id:{ident} sub:{sub} dlvrd:{sub} submit date:{dates[0]} done date:{dates[1]} stat:{stat} err:{err} text:x"
    assert _outcome_match(text) is not None  # the shortcut is what is tested here
    pdu = P.DeliverSm(esm_class=esm, short_message=text.encode() + b"\x00" * nuls, tlvs=tlvs)
    pdu = P.decode(pdu.encode())
    assert receipt_outcome(pdu) == _reference(pdu)


@pytest.mark.parametrize(
    "rec",
    [r for r in PDUS if r["command"] in ("deliver_sm", "data_sm") and r["well_formed"]],
    ids=lambda r: r["id"],
)
def test_corpus_pdus_read_as_receipt_from_pdu(rec: dict) -> None:
    pdu = P.decode(bytes.fromhex(rec["hex"]))
    assert receipt_outcome(pdu) == _reference(pdu)


def test_the_canonical_receipt_is_read() -> None:
    text = b"id:1a2b sub:001 dlvrd:001 submit date:2611261200 done date:2611261201 stat:UNDELIV err:021 text:hi"
    pdu = P.decode(P.DeliverSm(esm_class=0x04, short_message=text + b"\x00").encode())
    mid, state, err, intermediate, raw = receipt_outcome(pdu)
    assert (mid, state.name, err, intermediate, raw) == ("1a2b", "UNDELIVERABLE", "021", False, text.decode())


def test_other_objects_take_the_general_reading() -> None:
    text = b"id:7 sub:001 dlvrd:001 submit date:2611261200 done date:2611261201 stat:DELIVRD err:000 text:"
    pdu = SimpleNamespace(short_message=b"", esm_class=0x04, tlv=lambda tag, d=None: text if tag == Tag.MESSAGE_PAYLOAD else d)
    assert receipt_outcome(pdu) == _reference(pdu)
    assert receipt_outcome(pdu)[0] == "7"
    mo = P.decode(P.DeliverSm(esm_class=0, short_message=b"hello").encode())
    assert receipt_outcome(mo) is None

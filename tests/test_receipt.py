"""Delivery receipt parsing, receipt PDUs and message-id matching (gateway.smpp.receipt)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.smpp.constants import MessageState, Tag
from gateway.smpp.receipt import (
    FINAL_STATES,
    ID_FORMATS,
    IdFormat,
    Receipt,
    ReceiptText,
    decode_receipt_excerpt,
    is_receipt,
    normalise_message_id,
    parse_receipt_date,
    parse_receipt_fields,
    parse_receipt_text,
    receipt_from_pdu,
    receipt_id_key,
    same_message_id,
    stat_to_state,
)

CORPUS = Path(__file__).parent / "corpus"


def _load(name: str) -> list[dict]:
    path = CORPUS / name
    assert path.exists(), f"test corpus file missing: {path}"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


RECEIPTS = _load("receipts.jsonl")
ID_PAIRS = _load("receipt_id_pairs.jsonl")
PDUS = {r["id"]: r for r in _load("pdus.jsonl")}
FIELDS = ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err", "text")


def test_corpus_sizes() -> None:
    assert len(RECEIPTS) == 58
    assert len(ID_PAIRS) == 14


# ---------------------------------------------------------------------------------------
# Receipt text: the corpus


@pytest.mark.parametrize("rec", RECEIPTS, ids=[r["id"] for r in RECEIPTS])
def test_corpus_receipt_fields(rec: dict) -> None:
    fields = parse_receipt_fields(rec["short_message"])
    assert msgspec.structs.asdict(fields) == rec["expected"]
    # The wire octets (bytes, decoded Latin-1) give the same answer as the text.
    assert parse_receipt_fields(bytes.fromhex(rec["short_message_hex"])) == fields
    if "expected_text_hex" in rec:
        assert fields.text is not None
        assert fields.text.encode("latin-1").hex() == rec["expected_text_hex"]


@pytest.mark.parametrize("rec", RECEIPTS, ids=[r["id"] for r in RECEIPTS])
def test_corpus_is_receipt(rec: dict) -> None:
    parsed = parse_receipt_text(rec["short_message"])
    exp = rec["expected"]
    if exp["id"] is None and exp["stat"] is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert msgspec.structs.asdict(parsed) == exp


def test_only_two_corpus_records_are_not_receipts() -> None:
    none = [r["id"] for r in RECEIPTS if parse_receipt_text(r["short_message"]) is None]
    assert none == ["rcpt-010", "rcpt-026"]


def test_out_of_order_record_takes_the_cloudhopper_reading() -> None:
    (rec,) = [r for r in RECEIPTS if r.get("ambiguous")]
    fields = parse_receipt_text(rec["short_message"])
    assert fields is not None
    assert fields.text == "" and fields.stat == "DELIVRD"
    assert msgspec.structs.asdict(fields) != rec["reference_parser_result"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Labels any case, vendor fields skipped, stray words ignored.
        ("ID:1 STAT:DELIVRD ERR:0 TEXT:x", {"id": "1", "stat": "DELIVRD", "err": "0", "text": "x"}),
        (
            "id:1 imsi:250991234567 sub:001 MCC=250 mnc:99 stat:UNDELIV err:005 text:hi",
            {"id": "1", "sub": "001", "stat": "UNDELIV", "err": "005", "text": "hi"},
        ),
        ("id:7 submit_date:1001010000 doneDate:1001010001 stat:X", {
            "id": "7", "submit_date": "1001010000", "done_date": "1001010001", "stat": "X"}),
        # An empty value followed by a non-label word takes that word.
        ("id: 42 stat: DELIVRD", {"id": "42", "stat": "DELIVRD"}),
        ("id: sub:1 stat:", {"id": "", "sub": "1", "stat": ""}),
        # text keeps everything, labels included, when those labels came earlier.
        (
            "id:5 stat:DELIVRD text:my id:6 stat:x",
            {"id": "5", "stat": "DELIVRD", "text": "my id:6 stat:x"},
        ),
        # ... and a moved-forward text stops where a tail of unseen standard fields starts.
        (
            "id:5 text:hello there stat:DELIVRD err:0",
            {"id": "5", "stat": "DELIVRD", "err": "0", "text": "hello there"},
        ),
        # A tail that is not only fields is text.
        ("id:5 text:a stat:DELIVRD and more", {"id": "5", "text": "a stat:DELIVRD and more"}),
        # First occurrence wins; tabs and newlines are blanks; trailing NULs dropped.
        ("id:1\tid:2\nstat:DELIVRD\x00\x00", {"id": "1", "stat": "DELIVRD"}),
        # NUL inside the text stays.
        ("id:1 text:a\x00b\x00", {"id": "1", "text": "a\x00b"}),
        # Latin-1 blanks (\xa0, \x85) are data, not separators.
        ("id:1\xa02 stat:D\x85", {"id": "1\xa02", "stat": "D\x85"}),
        ("", {}),
        ("\x00\x00", {}),
        ("text:", {"text": ""}),
    ],
)
def test_parse_variants(text: str, expected: dict) -> None:
    full = {k: expected.get(k) for k in FIELDS}
    assert msgspec.structs.asdict(parse_receipt_fields(text)) == full


def test_parse_bytes_is_latin1() -> None:
    raw = b"id:\xff\x80 stat:DELIVRD text:\xe9\x00"
    fields = parse_receipt_text(raw)
    assert fields is not None
    assert fields.id == "\xff\x80"
    assert fields.text == "\xe9"
    assert parse_receipt_text(bytearray(raw)) == fields
    assert parse_receipt_text(memoryview(raw)) == fields


def test_parse_rejects_non_text_types() -> None:
    with pytest.raises(TypeError):
        parse_receipt_text(42)  # type: ignore[arg-type]


def test_receipt_text_is_frozen_struct() -> None:
    fields = parse_receipt_text("id:1 stat:delivrd")
    assert isinstance(fields, ReceiptText) and isinstance(fields, msgspec.Struct)
    with pytest.raises(AttributeError):
        fields.id = "2"  # type: ignore[misc]
    assert fields.state is MessageState.DELIVERED
    assert msgspec.json.decode(msgspec.json.encode(fields), type=ReceiptText) == fields


# ---------------------------------------------------------------------------------------
# Receipt text: properties

_LABELS = ["id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:", "Text:"]
_pieces = st.one_of(
    st.sampled_from(_LABELS + [" ", "  ", "\t", "\x00", ":", "x", "0", "imsi:", "a:b", "\xa0"]),
    st.text(max_size=6),
)


@settings(max_examples=400)
@given(st.one_of(st.text(), st.lists(_pieces, max_size=30).map("".join)))
def test_parser_never_raises_on_text(s: str) -> None:
    fields = parse_receipt_fields(s)
    parsed = parse_receipt_text(s)
    assert (parsed is None) == (fields.id is None and fields.stat is None)
    if parsed is not None:
        assert parsed == fields


@settings(max_examples=300)
@given(st.one_of(st.binary(), st.lists(_pieces, max_size=30).map(lambda p: "".join(p).encode())))
def test_parser_never_raises_on_bytes(b: bytes) -> None:
    assert parse_receipt_text(b) == parse_receipt_text(b.decode("latin-1"))


_BLANKS = " \t\r\n\f\v"
_value = st.text(
    alphabet=st.characters(blacklist_characters=_BLANKS + "\x00", blacklist_categories=("Cs",)),
    max_size=12,
)
_header_names = ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err")
_label_spelling = {"submit_date": "submit date", "done_date": "done date"}


def _render(order: list[str], values: dict[str, str], text: str | None, upper: bool) -> str:
    parts = []
    for name in order:
        label = _label_spelling.get(name, name)
        parts.append(f"{label.upper() if upper else label}:{values[name]}")
    if text is not None:
        parts.append(("TEXT:" if upper else "text:") + text)
    return " ".join(parts)


@settings(max_examples=300)
@given(
    values=st.fixed_dictionaries({k: _value for k in _header_names}),
    text=st.text().filter(lambda t: not t.endswith("\x00")),
    order=st.permutations(list(_header_names)),
    upper=st.booleans(),
)
def test_round_trip_all_fields_any_text(values: dict, text: str, order: list, upper: bool) -> None:
    s = _render(order, values, text, upper)
    assert msgspec.structs.asdict(parse_receipt_fields(s)) == {**values, "text": text}


@settings(max_examples=300)
@given(
    values=st.fixed_dictionaries({k: _value for k in _header_names}),
    present=st.lists(st.sampled_from(_header_names), unique=True),
    text=st.none() | st.text(alphabet=st.characters(blacklist_characters=":\x00")),
    upper=st.booleans(),
)
def test_round_trip_some_fields(values: dict, present: list, text: str | None, upper: bool) -> None:
    s = _render(present, values, text, upper)
    expected = {k: (values[k] if k in present else None) for k in _header_names}
    expected["text"] = text
    assert msgspec.structs.asdict(parse_receipt_fields(s)) == expected


# ---------------------------------------------------------------------------------------
# Stat mapping


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("DELIVRD", MessageState.DELIVERED),
        ("EXPIRED", MessageState.EXPIRED),
        ("DELETED", MessageState.DELETED),
        ("UNDELIV", MessageState.UNDELIVERABLE),
        ("ACCEPTD", MessageState.ACCEPTED),
        ("UNKNOWN", MessageState.UNKNOWN),
        ("REJECTD", MessageState.REJECTED),
        ("ENROUTE", MessageState.ENROUTE),
        ("delivrd", MessageState.DELIVERED),
        ("Delivered", MessageState.DELIVERED),
        ("UNDELIVERABLE", MessageState.UNDELIVERABLE),
        ("undelivered", MessageState.UNDELIVERABLE),
        ("FAILED", MessageState.UNDELIVERABLE),
        ("ACCEPTED", MessageState.ACCEPTED),
        ("REJECTED", MessageState.REJECTED),
        ("EN_ROUTE", MessageState.ENROUTE),
        ("en-route", MessageState.ENROUTE),
        ("BUFFRED", MessageState.ENROUTE),
        (" DELIVRD\x00", MessageState.DELIVERED),
        ("DND_REJECTED", MessageState.REJECTED),
        ("2", MessageState.DELIVERED),
        ("8", MessageState.REJECTED),
        ("NOT_DELIVRD", None),
        ("X_DELIVRD", None),
        ("NOT_REJECTED", None),
        ("9", None),
        ("0", None),
        ("OK", None),
        ("", None),
        (None, None),
    ],
)
def test_stat_to_state(stat: str | None, state: MessageState | None) -> None:
    assert stat_to_state(stat) is state


def test_corpus_stats_all_map_except_missing() -> None:
    for rec in RECEIPTS:
        stat = rec["expected"]["stat"]
        if stat is not None:
            assert stat_to_state(stat) is not None, rec["id"]


@given(st.text())
def test_stat_to_state_never_raises(s: str) -> None:
    assert stat_to_state(s) is None or isinstance(stat_to_state(s), MessageState)


def test_final_states() -> None:
    assert MessageState.ENROUTE not in FINAL_STATES
    assert {MessageState.DELIVERED, MessageState.UNDELIVERABLE} <= FINAL_STATES
    assert MessageState.REJECTED in FINAL_STATES


# ---------------------------------------------------------------------------------------
# Dates


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1005232039", datetime(2010, 5, 23, 20, 39)),
        ("7001010000", datetime(1970, 1, 1, 0, 0)),
        ("6812312359", datetime(2068, 12, 31, 23, 59)),
        ("6901010000", datetime(1969, 1, 1, 0, 0)),
        ("110206193041", datetime(2011, 2, 6, 19, 30, 41)),
        ("201506201641", datetime(2015, 6, 20, 16, 41)),  # YYYYMMDDhhmm: month 15 otherwise
        ("20110314181534", datetime(2011, 3, 14, 18, 15, 34)),
        (" 1005232039\x00", datetime(2010, 5, 23, 20, 39)),
        ("1013232039", None),  # month 13
        ("1002302039", None),  # 30 February
        ("1005232460", None),  # minute 60
        ("100523203", None),
        ("10052320391", None),
        ("1005232039123", None),
        ("00000000000000", None),
        ("10O5232039", None),
        ("１００５２３２０３９", None),  # full-width digits are not receipt digits
        ("", None),
        (None, None),
    ],
)
def test_parse_receipt_date(value: str | None, expected: datetime | None) -> None:
    assert parse_receipt_date(value) == expected


def test_corpus_dates_match_source_assertions() -> None:
    checked = 0
    for rec in RECEIPTS:
        asserts = rec.get("source_asserts") or {}
        for key, field in (("submit", "submit_date"), ("done", "done_date")):
            if key in asserts:
                got = parse_receipt_date(rec["expected"][field])
                assert got == datetime.fromisoformat(asserts[key]), rec["id"]
                checked += 1
    assert checked >= 6


def test_every_corpus_date_parses() -> None:
    for rec in RECEIPTS:
        for field in ("submit_date", "done_date"):
            value = rec["expected"][field]
            if value is not None:
                assert parse_receipt_date(value) is not None, (rec["id"], field, value)


_dt_yy = st.datetimes(min_value=datetime(1969, 1, 1), max_value=datetime(2068, 12, 31, 23, 59, 59))


@given(_dt_yy)
def test_date_round_trip_10_digits(dt: datetime) -> None:
    dt = dt.replace(second=0, microsecond=0)
    assert parse_receipt_date(dt.strftime("%y%m%d%H%M")) == dt


@given(_dt_yy)
def test_date_round_trip_12_digits(dt: datetime) -> None:
    dt = dt.replace(microsecond=0)
    assert parse_receipt_date(dt.strftime("%y%m%d%H%M%S")) == dt


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_date_round_trip_14_digits(dt: datetime) -> None:
    dt = dt.replace(microsecond=0)
    assert parse_receipt_date(dt.strftime("%Y%m%d%H%M%S")) == dt


@given(st.text(max_size=20))
def test_date_never_raises(s: str) -> None:
    result = parse_receipt_date(s)
    assert result is None or (isinstance(result, datetime) and result.tzinfo is None)


# ---------------------------------------------------------------------------------------
# Excerpt decoding


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\x04\x1f\x04@\x048\x042\x045\x04B", "Привет"),  # rcpt-037 (smpplib-01)
        ("\x04\x1a", "К"),  # rcpt-025
        ("\x00H\x00i", "Hi"),
        ("\x04", "Ѐ"),  # odd length: the trailing-NUL strip ate the low octet
        ("Hello               ", "Hello               "),
        ("O`Y}", "O`Y}"),  # could be UTF-16BE '你好' but is kept as ASCII
        ("caf\xc3\xa9", "café"),  # UTF-8
        ("\x84A\x89O\x88 ENTO\x84H. \x8cAPAKA", "\x84A\x89O\x88 ENTO\x84H. \x8cAPAKA"),
        ("\x00\x01", "\x00\x01"),  # not printable as UTF-16 either
        ("line\r\n", "line\r\n"),
        ("", ""),
        ("已经", "已经"),  # already-decoded text passes through
    ],
)
def test_decode_receipt_excerpt(raw: str, expected: str) -> None:
    assert decode_receipt_excerpt(raw) == expected


@given(st.text())
def test_decode_receipt_excerpt_never_raises(s: str) -> None:
    assert isinstance(decode_receipt_excerpt(s), str)


# ---------------------------------------------------------------------------------------
# Receipt PDUs (stand-in object with the pdu.py attributes)


def _pdu(
    short_message: bytes = b"",
    esm_class: int = 0x04,
    data_coding: int = 0,
    **tlvs: object,
) -> SimpleNamespace:
    by_tag = {Tag[name.upper()]: value for name, value in tlvs.items()}
    return SimpleNamespace(
        short_message=short_message,
        esm_class=esm_class,
        data_coding=data_coding,
        tlv=lambda tag, default=None: by_tag.get(tag, default),
    )


STD = (
    b"id:0059113978 sub:001 dlvrd:001 submit date:1002101730 done date:1002101731 "
    b"stat:DELIVRD err:000 text:@$#!%&/:"
)


def test_receipt_from_text_only() -> None:
    r = receipt_from_pdu(_pdu(STD))
    assert isinstance(r, Receipt)
    assert r.message_id == "0059113978"
    assert r.receipted_message_id is None
    assert r.state is MessageState.DELIVERED
    assert r.error_code == "000"
    assert r.network_error is None
    assert r.submit_date == datetime(2010, 2, 10, 17, 30)
    assert r.done_date == datetime(2010, 2, 10, 17, 31)
    assert r.text_fields == parse_receipt_text(STD)
    assert r.text == "@$#!%&/:"
    assert r.is_final and not r.intermediate


@pytest.mark.parametrize("rec", RECEIPTS, ids=[r["id"] for r in RECEIPTS])
@pytest.mark.parametrize("tlvs", [{}, {"receipted_message_id": "6000", "message_state": 5}])
def test_without_details_only_the_dates_and_text_are_left_out(rec: dict, tlvs: dict) -> None:
    """receipt_from_pdu(details=False): the same receipt, submit_date/done_date/text None."""
    pdu = _pdu(bytes.fromhex(rec["short_message_hex"]), **tlvs)
    full = receipt_from_pdu(pdu, lenient=True)
    lean = receipt_from_pdu(pdu, lenient=True, details=False)
    if full is None:
        assert lean is None
        return
    assert lean == msgspec.structs.replace(full, submit_date=None, done_date=None, text=None)


def test_tlvs_take_precedence_over_text() -> None:
    # jasmin test_take_msgid_from_tlv_first / test_take_message_state_from_tlv_first
    text = b"id:5000 submit date:201506201641 done date:201506201641 stat:DELIVRD err:000"
    r = receipt_from_pdu(_pdu(text, receipted_message_id="6000", message_state=6))
    assert r is not None
    assert r.message_id == "6000"
    assert r.receipted_message_id == "6000"
    assert r.text_fields is not None and r.text_fields.id == "5000"
    assert r.state is MessageState.ACCEPTED
    assert r.done_date == datetime(2015, 6, 20, 16, 41)


def test_invalid_message_state_tlv_falls_back_to_stat() -> None:
    r = receipt_from_pdu(_pdu(STD, message_state=99))
    assert r is not None and r.state is MessageState.DELIVERED
    r = receipt_from_pdu(_pdu(STD, message_state=b"\x05"))
    assert r is not None and r.state is MessageState.UNDELIVERABLE


def test_empty_or_nul_tlv_id_falls_back_to_text() -> None:
    r = receipt_from_pdu(_pdu(STD, receipted_message_id=""))
    assert r is not None and r.message_id == "0059113978" and r.receipted_message_id is None
    r = receipt_from_pdu(_pdu(STD, receipted_message_id=b"38601fa\x00"))
    assert r is not None and r.message_id == "38601fa"


def test_payload_used_when_short_message_empty() -> None:
    # jasmin-04 / rcpt-016: receipt text in message_payload, with a trailing NUL.
    payload = b"id:0000436949 submit date:1504211508 done date:1504211508 stat:DELIVRD err:000\x00"
    pdu = _pdu(b"", message_payload=payload, receipted_message_id="6aad5", message_state=2)
    r = receipt_from_pdu(pdu)
    assert r is not None
    assert r.message_id == "6aad5"
    assert r.text_fields is not None and r.text_fields.id == "0000436949"
    assert same_message_id(r.message_id, r.text_fields.id)
    assert r.text is None


def test_short_message_wins_over_payload() -> None:
    r = receipt_from_pdu(_pdu(b"id:1 stat:DELIVRD", message_payload=b"id:2 stat:UNDELIV"))
    assert r is not None and r.message_id == "1"


def test_network_error_code() -> None:
    r = receipt_from_pdu(_pdu(STD, network_error_code=b"\x03\x00\x22"))
    assert r is not None and r.network_error == (3, 0x22)
    r = receipt_from_pdu(_pdu(STD, network_error_code=b"000"))  # jasmin-01: ASCII, still 3 octets
    assert r is not None and r.network_error == (0x30, 0x3030)
    r = receipt_from_pdu(_pdu(STD, network_error_code=b"\x03\x00"))
    assert r is not None and r.network_error is None


def test_utf16_excerpt_is_decoded() -> None:
    rec = next(r for r in RECEIPTS if r["id"] == "rcpt-037")
    raw = bytes.fromhex(rec["short_message_hex"])
    pdu = _pdu(b"", message_payload=raw, receipted_message_id="1d305b4c", message_state=2)
    r = receipt_from_pdu(pdu)
    assert r is not None
    assert r.text == "Привет"
    assert r.text_fields is not None and r.text_fields.text == rec["expected"]["text"]
    assert r.message_id == "1d305b4c"
    assert same_message_id(r.message_id, r.text_fields.id)


def test_all_utf16_receipt_body() -> None:
    body = "id:77 stat:UNDELIV err:1 text:Привет".encode("utf-16-be")
    r = receipt_from_pdu(_pdu(body, data_coding=8))
    assert r is not None
    assert r.message_id == "77" and r.state is MessageState.UNDELIVERABLE
    assert r.text == "Привет"


def test_not_a_receipt() -> None:
    mo = _pdu(b"id:1 stat:DELIVRD", esm_class=0)
    assert not is_receipt(mo)
    assert receipt_from_pdu(mo) is None
    lenient = receipt_from_pdu(mo, lenient=True)
    assert lenient is not None and lenient.message_id == "1"
    assert receipt_from_pdu(_pdu(b"hello", esm_class=0), lenient=True) is None


@pytest.mark.parametrize(
    ("esm_class", "expected"),
    [(0x00, False), (0x04, True), (0x44, True), (0x84, True), (0x20, True), (0x08, False),
     (0x10, False), (0x18, False), (0x24, False), (0x40, False), (0x4D, False)],
)
def test_is_receipt_esm_bits(esm_class: int, expected: bool) -> None:
    assert is_receipt(_pdu(b"", esm_class=esm_class)) is expected


def test_receipted_message_id_alone_makes_a_receipt() -> None:
    pdu = _pdu(b"362d9701 2", esm_class=0, receipted_message_id="362d9701", message_state=2)
    assert is_receipt(pdu)
    r = receipt_from_pdu(pdu)  # rcpt-026: text is no receipt, TLVs are
    assert r is not None
    assert r.message_id == "362d9701" and r.state is MessageState.DELIVERED
    assert r.text_fields is None and r.text is None and r.error_code is None


def test_intermediate_notification() -> None:
    r = receipt_from_pdu(_pdu(b"id:9 stat:ENROUTE", esm_class=0x20))
    assert r is not None and r.intermediate and r.state is MessageState.ENROUTE and not r.is_final
    r = receipt_from_pdu(_pdu(b"id:9 stat:DELIVRD", esm_class=0x20))
    assert r is not None and not r.is_final


def test_flagged_receipt_without_anything() -> None:
    r = receipt_from_pdu(_pdu(b"", esm_class=0x04))
    assert r == Receipt()


def test_data_sm_without_short_message() -> None:
    pdu = SimpleNamespace(
        esm_class=0x04,
        data_coding=0,
        tlv=lambda tag, default=None: {Tag.MESSAGE_PAYLOAD: b"id:3 stat:EXPIRED"}.get(tag, default),
    )
    r = receipt_from_pdu(pdu)
    assert r is not None and r.message_id == "3" and r.state is MessageState.EXPIRED


def test_receipt_is_msgspec_encodable() -> None:
    pdu = _pdu(
        STD, receipted_message_id="38601fa", message_state=2, network_error_code=b"\x03\x00\x01"
    )
    r = receipt_from_pdu(pdu)
    assert r is not None
    again = msgspec.json.decode(msgspec.json.encode(r), type=Receipt)
    assert again == r


@settings(max_examples=200)
@given(
    sm=st.binary(max_size=80),
    esm=st.integers(0, 255),
    tlv_id=st.none() | st.text(max_size=10) | st.binary(max_size=10),
    state=st.none() | st.integers(-5, 300) | st.binary(max_size=2),
    nec=st.none() | st.binary(max_size=4),
)
def test_receipt_from_pdu_never_raises(sm: bytes, esm: int, tlv_id, state, nec) -> None:
    pdu = _pdu(
        sm, esm_class=esm, receipted_message_id=tlv_id, message_state=state, network_error_code=nec
    )
    r = receipt_from_pdu(pdu, lenient=True)
    assert r is None or isinstance(r, Receipt)


# Real PDUs from the corpus through the real codec (gateway/smpp/pdu.py).


def _corpus_receipt_pdus() -> list[tuple[dict, dict]]:
    out = []
    for rec in RECEIPTS:
        pid = rec["source"].get("corpus_pdu")
        if pid and PDUS[pid]["well_formed"]:
            out.append((rec, PDUS[pid]))
    return out


@pytest.mark.parametrize(
    ("rec", "pdu_rec"), _corpus_receipt_pdus(), ids=[r["id"] for r, _ in _corpus_receipt_pdus()]
)
def test_corpus_pdus_through_codec(rec: dict, pdu_rec: dict) -> None:
    pdu_mod = pytest.importorskip("gateway.smpp.pdu")
    pdu = pdu_mod.decode(bytes.fromhex(pdu_rec["hex"]))
    assert is_receipt(pdu)
    r = receipt_from_pdu(pdu)
    assert r is not None
    assert r.text_fields is not None
    assert msgspec.structs.asdict(r.text_fields) == rec["expected"]
    tlvs = rec.get("pdu_tlvs") or {}
    tlv_id = tlvs.get("receipted_message_id")
    assert r.message_id == (tlv_id or rec["expected"]["id"])
    if tlv_id:
        assert same_message_id(tlv_id, rec["expected"]["id"])
    if "message_state" in tlvs:
        assert r.state == MessageState(tlvs["message_state"])
    else:
        assert r.state is stat_to_state(rec["expected"]["stat"])


def test_corpus_mo_pdus_are_not_receipts() -> None:
    pdu_mod = pytest.importorskip("gateway.smpp.pdu")
    checked = 0
    for rec in PDUS.values():
        if rec["command"] in ("deliver_sm", "data_sm") and rec["well_formed"]:
            pdu = pdu_mod.decode(bytes.fromhex(rec["hex"]))
            esm = rec["fields"].get("esm_class", 0)
            has_receipt_id = any(t["tag"] in (0x1E, "0x001e") for t in rec["tlvs"])
            if esm & 0x3C not in (0x04, 0x20) and not has_receipt_id:
                assert receipt_from_pdu(pdu) is None, rec["id"]
                checked += 1
    assert checked >= 10


# ---------------------------------------------------------------------------------------
# Message ids


@pytest.mark.parametrize("pair", ID_PAIRS, ids=[p["id"] for p in ID_PAIRS])
def test_corpus_id_pairs_auto(pair: dict) -> None:
    assert same_message_id(pair["a"], pair["b"]) is pair["same_message"]
    assert same_message_id(pair["b"], pair["a"]) is pair["same_message"]


def _role_format(role: str) -> IdFormat:
    if "hex" in role:
        return "hex"
    if "decimal" in role:
        return "decimal"
    return "string"


@pytest.mark.parametrize("pair", ID_PAIRS, ids=[p["id"] for p in ID_PAIRS])
def test_corpus_id_pairs_with_declared_formats(pair: dict) -> None:
    fa, fb = _role_format(pair["a_role"]), _role_format(pair["b_role"])
    same = receipt_id_key(pair["a"], fa) == receipt_id_key(pair["b"], fb)
    assert same is pair["same_message"]
    answer = same_message_id(pair["a"], pair["b"], a_format=fa, b_format=fb)
    assert answer is pair["same_message"]


@pytest.mark.parametrize("pair", [p for p in ID_PAIRS if "0x" in p["basis"]], ids=lambda p: p["id"])
def test_corpus_id_pairs_arithmetic(pair: dict) -> None:
    # The basis "0x38601fa = 59113978": both keys are that decimal number.
    m = re.search(r"0x([0-9a-fA-F]+) = (\d+)", pair["basis"])
    assert m is not None
    assert receipt_id_key(m.group(1), "hex") == m.group(2)
    assert receipt_id_key(m.group(2), "decimal") == m.group(2)


@pytest.mark.parametrize(
    ("raw", "fmt", "normal", "key"),
    [
        ("0059113978", "decimal", "59113978", "59113978"),
        ("0059113978", "auto", "59113978", "59113978"),
        ("0059113978", "hex", "59113978", str(0x59113978)),
        ("0059113978", "string", "0059113978", "0059113978"),
        ("38601fa", "hex", "38601fa", "59113978"),
        ("0x038601FA", "hex", "38601fa", "59113978"),
        ("0X38601fa", "auto", "38601fa", "59113978"),
        ("38601FA", "auto", "38601fa", "59113978"),
        ("38601fa", "decimal", "38601fa", "38601fa"),  # invalid for the format: opaque
        ("38601fa", "string", "38601fa", "38601fa"),
        ("000", "decimal", "0", "0"),
        ("000", "hex", "0", "0"),
        (" 42\x00", "decimal", "42", "42"),
        ("74E02EE1-4E2F-4A6E-A78B-4B247D756A22", "auto",
         "74e02ee1-4e2f-4a6e-a78b-4b247d756a22", "74e02ee1-4e2f-4a6e-a78b-4b247d756a22"),
        ("74E02EE1-4E2F-4A6E-A78B-4B247D756A22", "string",
         "74E02EE1-4E2F-4A6E-A78B-4B247D756A22", "74E02EE1-4E2F-4A6E-A78B-4B247D756A22"),
        ("MSG-ABC-1", "auto", "MSG-ABC-1", "MSG-ABC-1"),
        ("+12", "decimal", "+12", "+12"),  # int() would accept these; we do not
        ("1_000", "auto", "1_000", "1_000"),
        ("", "auto", "", ""),
        ("1" * 65, "decimal", "1" * 65, "1" * 65),  # longer than SMPP allows: opaque
    ],
)
def test_normalise_and_key(raw: str, fmt: str, normal: str, key: str) -> None:
    assert normalise_message_id(raw, fmt) == normal  # type: ignore[arg-type]
    assert receipt_id_key(raw, fmt) == key  # type: ignore[arg-type]


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError):
        receipt_id_key("1", "base36")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        normalise_message_id("1", "HEX")  # type: ignore[arg-type]


def test_empty_ids_never_match() -> None:
    assert not same_message_id("", "")
    assert not same_message_id(" ", "\x00")
    assert not same_message_id("", "0")


def test_opaque_ids_are_exact() -> None:
    assert same_message_id("msg-1", " msg-1 ")
    assert not same_message_id("msg-1", "MSG-1")
    assert not same_message_id("a", "b")
    assert same_message_id("ABC", "abc")  # hex letters: numeric, case-insensitive
    assert not same_message_id("ABCg", "abcg")  # not hex: exact


def test_fallback_keys_never_equal_numeric_keys() -> None:
    # A letter in a "decimal" id cannot collide with any decimal key.
    assert receipt_id_key("1a", "decimal") != receipt_id_key("26", "decimal")
    assert receipt_id_key("1a", "decimal") != receipt_id_key("1a", "hex")


def test_auto_ambiguities_documented() -> None:
    # A letterless hex id is read as decimal: missed match across forms ...
    assert receipt_id_key("1234", "hex") == "4660"
    assert receipt_id_key("1234", "auto") == "1234"
    assert not same_message_id("1234", "4660")
    assert same_message_id("1234", "4660", a_format="hex", b_format="decimal")
    # ... and a false match between two hex ids of one SMSC.
    assert same_message_id("1234", "4d2")
    assert not same_message_id("1234", "4d2", a_format="hex", b_format="hex")
    # Two decimal-looking ids are never cross-compared: "10" is not 0x10 = 16.
    assert not same_message_id("10", "16")


@given(st.integers(min_value=0, max_value=10**57), st.integers(0, 6), st.booleans())  # <= 64 chars
def test_key_hex_decimal_agree(n: int, zeros: int, upper: bool) -> None:
    hexform = "0" * zeros + (format(n, "X") if upper else format(n, "x"))
    decform = "0" * zeros + str(n)
    assert receipt_id_key(hexform, "hex") == receipt_id_key(decform, "decimal") == str(n)
    assert normalise_message_id(hexform, "hex") == format(n, "x")
    assert normalise_message_id(decform, "decimal") == str(n)
    assert same_message_id(hexform, decform, a_format="hex", b_format="decimal")
    if re.search("[a-fA-F]", hexform):
        assert same_message_id(hexform, decform)  # auto sees the letter


@given(st.integers(0, 2**64), st.integers(0, 2**64), st.sampled_from(["hex", "decimal"]))
def test_different_numbers_never_match(a: int, b: int, fmt: str) -> None:
    assume(a != b)
    fa = format(a, "x") if fmt == "hex" else str(a)
    fb = format(b, "x") if fmt == "hex" else str(b)
    assert not same_message_id(fa, fb, a_format=fmt, b_format=fmt)  # type: ignore[arg-type]
    assert receipt_id_key(fa, fmt) != receipt_id_key(fb, fmt)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.text(max_size=80), st.text(max_size=80), st.sampled_from(ID_FORMATS))
def test_id_functions_never_raise(a: str, b: str, fmt: str) -> None:
    ka = receipt_id_key(a, fmt)  # type: ignore[arg-type]
    assert isinstance(ka, str)
    assert isinstance(normalise_message_id(a, fmt), str)  # type: ignore[arg-type]
    assert same_message_id(a, a) is bool(receipt_id_key(a))
    assert same_message_id(a, b) == same_message_id(b, a)


@given(st.text(max_size=40))
def test_key_is_idempotent_for_numeric_readings(s: str) -> None:
    k = receipt_id_key(s, "decimal")
    if k.isascii() and k.isdigit():
        assert receipt_id_key(k, "decimal") == k


# ---- the canonical-layout fast path gives exactly what the tolerant scan gives ----------

from gateway.smpp.receipt import ReceiptText as _RT  # noqa: E402
from gateway.smpp.receipt import _scan  # noqa: E402

# Empty values and Latin-1 blanks included: there the fast path must step aside.
_value = st.text(
    alphabet=st.characters(codec="latin-1", exclude_characters="\x00"), min_size=0, max_size=12
)


@settings(max_examples=400, deadline=None)
@given(
    mid=_value,
    sub=_value,
    dlvrd=_value,
    sdate=st.text(alphabet="0123456789", min_size=0, max_size=14),
    ddate=st.text(alphabet="0123456789", min_size=0, max_size=14),
    stat=_value,
    err=_value,
    label=st.sampled_from(["text:", "Text:", "TEXT:"]),
    text=st.text(alphabet=st.characters(codec="latin-1"), max_size=40),
)
def test_fast_path_agrees_with_the_scan(mid, sub, dlvrd, sdate, ddate, stat, err, label, text):
    s = (
        f"id:{mid} sub:{sub} dlvrd:{dlvrd} submit date:{sdate} done date:{ddate} "
        f"stat:{stat} err:{err} {label}{text}"
    )
    assert parse_receipt_fields(s) == _RT(**_scan(s.rstrip("\x00")))


def test_fast_path_agrees_on_the_corpus():
    for rec in RECEIPTS:
        s = rec["short_message"]
        assert parse_receipt_fields(s) == _RT(**_scan(s.rstrip("\x00"))), rec["id"]


# ---- receipt_from_pdu and receipt_id_key against their reference readings ---------------
#
# receipt_from_pdu reads the canonical layout with one regex inline, memoises dates and skips
# work the answer does not need; receipt_id_key has fast paths for plain numeric ids. The
# reference below is the straightforward composition they replace (fields from the tolerant
# scan only, dates parsed every time, MessageState(...) by value, ids through _classify):
# both must give equal answers for every PDU and id.

from gateway.smpp import receipt as _R  # noqa: E402
from gateway.smpp.constants import (  # noqa: E402
    ESM_CLASS_INTERMEDIATE_NOTIFICATION as _INTERMEDIATE,
)
from gateway.smpp.pdu import PDU_CLASSES as _PDU_CLASSES  # noqa: E402
from gateway.smpp.pdu import Tlv as _Tlv  # noqa: E402
from gateway.smpp.constants import CommandId as _CommandId  # noqa: E402

_DeliverSm = _PDU_CLASSES[_CommandId.DELIVER_SM]


def _ref_clean(value):
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("latin-1")
    if not isinstance(value, str):
        return None
    return value.strip(" \t\r\n\f\v\x00") or None


def _ref_tlv(pdu, tag):
    getter = getattr(pdu, "tlv", None)
    return getter(tag) if getter is not None else None


def _ref_fields(raw: bytes):
    """(fields, decoded) like _text_of, but always through the tolerant scan."""

    def scan(data):
        s = (data if isinstance(data, str) else data.decode("latin-1")).rstrip("\x00")
        fields = _RT(**_scan(s))
        return fields if fields.id is not None or fields.stat is not None else None

    fields = scan(raw)
    if fields is not None:
        return fields, False
    if len(raw) >= 4 and raw[0] == 0 and raw[2] == 0:
        b = raw if len(raw) % 2 == 0 else raw + b"\x00"
        fields = scan(b.decode("utf-16-be", errors="replace"))
        if fields is not None:
            return fields, True
    return None, False


def _ref_state(value):
    if isinstance(value, (bytes, bytearray)) and len(value) == 1:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return MessageState(value)
        except ValueError:
            return None
    return None


def _ref_stat(stat):
    if not stat:
        return None
    s = stat.strip(" \t\r\n\f\v\x00").upper().replace("-", "_").replace(" ", "_")
    state = _R._STAT_TABLE.get(s)
    if state is not None:
        return state
    if s.isascii() and s.isdigit() and len(s) <= 2:
        return _ref_state(int(s))
    if "_" in s:
        prefix, word = s.rsplit("_", 1)
        state = _R._STAT_TABLE.get(word)
        if state in _R._QUALIFIABLE and prefix.rsplit("_", 1)[-1] not in ("NOT", "NON", "UN"):
            return state
    return None


def _ref_excerpt(raw: str) -> str:
    try:
        b = raw.encode("latin-1")
    except UnicodeEncodeError:
        return raw
    text = _R._utf16_reading(b)
    if text is not None:
        return text
    if not b.isascii():
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return raw


def _ref_date(value):
    """parse_receipt_date as first written: no memo, slices and int()s."""
    if value is None:
        return None
    s = value.strip(" \t\r\n\f\v\x00")
    if not (s.isascii() and s.isdigit()):
        return None
    n = len(s)
    if n == 10:
        candidates = [(s[0:2], s[2:4], s[4:6], s[6:8], s[8:10], "0")]
    elif n == 12:
        candidates = [
            (s[0:2], s[2:4], s[4:6], s[6:8], s[8:10], s[10:12]),
            (s[0:4], s[4:6], s[6:8], s[8:10], s[10:12], "0"),
        ]
    elif n == 14:
        candidates = [(s[0:4], s[4:6], s[6:8], s[8:10], s[10:12], s[12:14])]
    else:
        return None
    for y, mo, d, h, mi, sec in candidates:
        year = int(y)
        if len(y) == 2:
            year += 2000 if year < 69 else 1900
        try:
            return datetime(year, int(mo), int(d), int(h), int(mi), int(sec))
        except ValueError:
            continue
    return None


def _ref_receipt(pdu, lenient: bool = False):
    kind = _R._esm_receipt_type(getattr(pdu, "esm_class", 0))
    flagged = kind in (0x04, _INTERMEDIATE) or _ref_clean(
        _ref_tlv(pdu, Tag.RECEIPTED_MESSAGE_ID)
    ) is not None
    raw = getattr(pdu, "short_message", None) or b""
    if not raw:
        payload = _ref_tlv(pdu, Tag.MESSAGE_PAYLOAD)
        if isinstance(payload, (bytes, bytearray, memoryview)):
            raw = bytes(payload)
        elif isinstance(payload, str):
            raw = payload.encode("latin-1", errors="replace")
    if isinstance(raw, str):
        raw = raw.encode("latin-1", errors="replace")
    fields, decoded = _ref_fields(bytes(raw))
    if not flagged and not (lenient and fields is not None):
        return None
    tlv_id = _ref_clean(_ref_tlv(pdu, Tag.RECEIPTED_MESSAGE_ID))
    text_id = _ref_clean(fields.id) if fields is not None else None
    state = _ref_state(_ref_tlv(pdu, Tag.MESSAGE_STATE))
    if state is None and fields is not None:
        state = _ref_stat(fields.stat)
    text = None
    if fields is not None and fields.text is not None:
        text = fields.text if decoded else _ref_excerpt(fields.text)
    return Receipt(
        message_id=tlv_id or text_id,
        state=state,
        error_code=fields.err if fields is not None else None,
        network_error=_R._network_error(_ref_tlv(pdu, Tag.NETWORK_ERROR_CODE)),
        done_date=_ref_date(fields.done_date) if fields is not None else None,
        submit_date=_ref_date(fields.submit_date) if fields is not None else None,
        text_fields=fields,
        receipted_message_id=tlv_id,
        text=text,
        intermediate=kind == _INTERMEDIATE,
    )


def _ref_key(raw: str, fmt: str) -> str:
    s = raw.strip(" \t\r\n\f\v\x00")
    kind, value = _R._classify(s, fmt)
    if value is not None:
        return str(value)
    return s.lower() if kind == "uuid" else s


def _same_receipt(a, b) -> bool:
    # Receipt == compares field by field; `is` for the enum keeps IntEnum from passing as int.
    return a == b and (a is None or a.state is b.state)


_latin1 = st.characters(codec="latin-1")
_word = st.text(alphabet=_latin1, max_size=10)  # empties, blanks, NULs: fast path steps aside
_plain = st.text(alphabet="0123456789abcdefABCDEFxX", min_size=1, max_size=12)
_dates = st.one_of(
    st.text(alphabet="0123456789", min_size=0, max_size=15),
    st.sampled_from(["2403151230", "7001010000", "201506201641", "20240315123059", "9913321299"]),
)
_stats = st.one_of(
    st.sampled_from(["DELIVRD", "UNDELIV", "delivrd", "EN-ROUTE", "2", "X_REJECTD"]), _word
)
_excerpts = st.one_of(
    st.text(alphabet=_latin1, max_size=30),
    st.text(max_size=10).map(lambda t: t.encode("utf-16-be").decode("latin-1")),
    st.text(max_size=10).map(lambda t: t.encode("utf-8").decode("latin-1")),
)


@st.composite
def _receipt_pdus(draw):
    """A deliver_sm (a real Pdu struct, or a stand-in) with a canonical-layout text."""
    mid = draw(st.one_of(_plain, _word))
    label = draw(st.sampled_from(["text:", "Text:", "TEXT:"]))
    text = (
        f"id:{mid} sub:{draw(st.one_of(_plain, _word))} dlvrd:{draw(st.one_of(_plain, _word))}"
        f" submit date:{draw(_dates)} done date:{draw(_dates)} stat:{draw(_stats)}"
        f" err:{draw(st.one_of(_plain, _word))} {label}"
        f"{draw(_excerpts)}{draw(st.sampled_from(['', '', chr(0), chr(0) * 3]))}"
    ).encode("latin-1")
    if draw(st.booleans()):
        text = text.decode("latin-1").encode("utf-16-be", errors="replace")
    tlvs = {}
    tlv_id = draw(st.none() | st.just(mid) | _word | st.binary(max_size=6))
    if tlv_id is not None:
        tlvs[Tag.RECEIPTED_MESSAGE_ID] = tlv_id
    state = draw(
        st.none() | st.integers(-1, 10) | st.binary(max_size=2) | st.booleans()
        | st.sampled_from(list(MessageState))
    )
    if state is not None:
        tlvs[Tag.MESSAGE_STATE] = state
    nec = draw(st.none() | st.binary(min_size=2, max_size=4))
    if nec is not None:
        tlvs[Tag.NETWORK_ERROR_CODE] = nec
    in_payload = draw(st.booleans())
    if in_payload:
        tlvs[Tag.MESSAGE_PAYLOAD] = text
    esm = draw(st.sampled_from([0x00, 0x04, 0x20, 0x44, 0x08]) | st.integers(0, 255))
    sm = b"" if in_payload else text
    if draw(st.booleans()):
        return _DeliverSm(
            esm_class=esm, short_message=sm, tlvs=[_Tlv(int(t), v) for t, v in tlvs.items()]
        )
    return _pdu(sm, esm_class=esm, **{t.name.lower(): v for t, v in tlvs.items()})


@settings(max_examples=500, deadline=None)
@given(pdu=_receipt_pdus(), lenient=st.booleans())
def test_receipt_from_pdu_agrees_with_the_reference(pdu, lenient: bool) -> None:
    got = receipt_from_pdu(pdu, lenient=lenient)
    assert _same_receipt(got, _ref_receipt(pdu, lenient))
    again = receipt_from_pdu(pdu, lenient=lenient)  # the date memo gives what parsing gives
    assert _same_receipt(again, got)


@pytest.mark.parametrize("rec", RECEIPTS, ids=[r["id"] for r in RECEIPTS])
def test_receipt_from_pdu_agrees_with_the_reference_on_the_corpus(rec: dict) -> None:
    raw = bytes.fromhex(rec["short_message_hex"])
    tlvs = rec.get("pdu_tlvs") or {}
    for pdu in (
        _pdu(raw),
        _pdu(raw, esm_class=0),
        _pdu(b"", message_payload=raw, receipted_message_id="38601fa", message_state=2),
        _DeliverSm(esm_class=0x04, short_message=raw[:254], tlvs=[
            _Tlv(int(Tag[k.upper()]), v) for k, v in tlvs.items() if k.upper() in Tag.__members__
        ]),
    ):
        for lenient in (False, True):
            assert _same_receipt(receipt_from_pdu(pdu, lenient=lenient), _ref_receipt(pdu, lenient))


def test_receipt_from_pdu_canonical_values() -> None:
    # One canonical receipt through the codec, every field spelled out (the fast path).
    pdu = _DeliverSm(
        esm_class=0x04,
        short_message=STD + b"\x00",
        tlvs=[_Tlv(int(Tag.RECEIPTED_MESSAGE_ID), "38601FA\x00"), _Tlv(int(Tag.MESSAGE_STATE), 5)],
    )
    r = receipt_from_pdu(pdu)
    assert r == Receipt(
        message_id="38601FA",
        state=MessageState.UNDELIVERABLE,
        error_code="000",
        done_date=datetime(2010, 2, 10, 17, 31),
        submit_date=datetime(2010, 2, 10, 17, 30),
        text_fields=ReceiptText(
            "0059113978", "001", "001", "1002101730", "1002101731", "DELIVRD", "000", "@$#!%&/:"
        ),
        receipted_message_id="38601FA",
        text="@$#!%&/:",
    )
    assert r is not None and r.state is MessageState.UNDELIVERABLE
    assert receipt_id_key(r.message_id, "hex") == receipt_id_key("0059113978", "decimal")


_id_chars = st.sampled_from(list("0123456789abcdefABCDEFxXgz_-+ \t\x00\xa0٣") + ["0x", "0X"])


@settings(max_examples=600, deadline=None)
@given(
    raw=st.one_of(
        st.lists(_id_chars, max_size=70).map("".join),
        st.text(alphabet="0123456789abcdefABCDEFxX_", max_size=8),  # what int() also reads
        st.integers(0, 16**66).map(lambda n: format(n, "x")),
        st.integers(0, 10**66).map(str),
        st.text(max_size=70),
        st.uuids().map(str),
    ),
    fmt=st.sampled_from(ID_FORMATS),
)
def test_receipt_id_key_agrees_with_the_reference(raw: str, fmt: str) -> None:
    assert receipt_id_key(raw, fmt) == _ref_key(raw, fmt)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789 \x00", max_size=16),
        st.sampled_from([10, 12, 14]).flatmap(
            lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
        ),
        st.tuples(
            st.datetimes(min_value=datetime(1000, 1, 1)),
            st.sampled_from(["%y%m%d%H%M", "%y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d%H%M%S"]),
        ).map(lambda t: t[0].strftime(t[1])),
        st.text(max_size=30),
    )
)
def test_date_memo_gives_what_parsing_gives(value: str) -> None:
    assert parse_receipt_date(value) == _ref_date(value)
    assert parse_receipt_date(value) == _ref_date(value)  # from the memo this time


def test_date_memo_keys_are_exact() -> None:
    # Blanks str.strip() knows but the date parser does not must not share a memo entry.
    values = ["\x1c2403151230", "2403151230\x85", " 2403151230\x00", "2403151230", "\xa02403151230"]
    for v in values + values[::-1]:
        assert parse_receipt_date(v) == _ref_date(v), repr(v)


def test_date_memo_is_bounded() -> None:
    for i in range(_R._DATE_MEMO_MAX + 10):
        assert parse_receipt_date(f"{i:010d}") == _ref_date(f"{i:010d}")
    assert len(_R._DATE_MEMO) <= _R._DATE_MEMO_MAX
    assert parse_receipt_date("x" * 100) is None  # long strings are parsed, not kept
    assert "x" * 100 not in _R._DATE_MEMO


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(alphabet=_latin1, max_size=20), st.text(max_size=20)))
def test_excerpt_and_stat_agree_with_the_reference(s: str) -> None:
    assert decode_receipt_excerpt(s) == _ref_excerpt(s)
    assert stat_to_state(s) is _ref_stat(s)

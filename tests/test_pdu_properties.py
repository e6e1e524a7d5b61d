"""Property tests of the PDU codec: round trips, fuzzing, encode-side validation.

The strategies are derived from the codec's own layout table (`_BODIES`), so a PDU type or a
field added there is covered here without touching this file.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.smpp.constants import RESPONSE_BIT, CommandId, CommandStatus, Tag
from gateway.smpp.errors import PduError
from gateway.smpp.pdu import (
    _BODIES,
    DECODERS,
    PDU_CLASSES,
    TLV_TYPES,
    DestAddress,
    Pdu,
    Tlv,
    UnsuccessSme,
    decode,
    make_response,
    response_class,
)

# Budgets: the whole file must stay well under ~30 s.
ROUNDTRIP = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ = settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SMALL = settings(max_examples=100, deadline=None)

ALL_IDS = sorted(PDU_CLASSES)
U32 = st.integers(0, 0xFFFFFFFF)
U8 = st.integers(0, 255)
LATIN1_NO_NUL = st.characters(min_codepoint=1, max_codepoint=255)


def cstr(limit: int) -> st.SearchStrategy[str]:
    """C-Octet String contents for a field of `limit` octets including the NUL."""
    return st.text(LATIN1_NO_NUL, max_size=limit - 1)


# Time fields: empty, or 16 characters (realistic absolute/relative times, or any 16 chars).
_REALISTIC_TIME = st.builds(
    lambda yy, mo, dd, hh, mi, ss, t, nn, p: (
        f"{yy:02}{mo:02}{dd:02}{hh:02}{mi:02}{ss:02}{t}{nn:02}{p}"
    ),
    st.integers(0, 99),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 9),
    st.integers(0, 48),
    st.sampled_from("+-R"),
)
TIME = st.one_of(
    st.just(""), _REALISTIC_TIME, st.text(LATIN1_NO_NUL, min_size=16, max_size=16)
)

DEST_ADDRESS = st.one_of(
    st.builds(lambda ton, npi, a: DestAddress(1, ton, npi, a), U8, U8, cstr(21)),
    st.builds(lambda n: DestAddress(2, dl_name=n), cstr(21)),
)
UNSUCCESS_SME = st.builds(UnsuccessSme, U8, U8, cstr(21), U32)


def _field(row: tuple) -> st.SearchStrategy[Any]:
    kind = row[1]
    if kind == "C":
        return cstr(row[2])
    if kind == "T":
        return TIME
    if kind == "U8":
        return U8
    if kind == "U32":
        return U32
    if kind == "SM":
        return st.binary(max_size=255)
    if kind == "DESTS":
        return st.lists(DEST_ADDRESS, max_size=6)
    if kind == "UNSUC":
        return st.lists(UNSUCCESS_SME, max_size=6)
    raise AssertionError(
        f"no strategy for field kind {kind!r}: extend tests/test_pdu_properties.py"
    )


def _typed_tlv(tag: int) -> st.SearchStrategy[Tlv]:
    kind = TLV_TYPES[tag]
    if kind == "cstr":
        return st.builds(
            lambda v, term: Tlv(tag, v, term),
            st.text(LATIN1_NO_NUL, max_size=70),
            st.booleans(),
        )
    return st.builds(lambda v: Tlv(tag, v), st.integers(0, (1 << (8 * kind)) - 1))


TYPED_TLV = st.sampled_from(sorted(TLV_TYPES)).flatmap(_typed_tlv)
# Everything not in TLV_TYPES is raw bytes: standard octet-string tags (message_payload, ...),
# vendor-specific tags (0x1400-0x3FFF) and anything else.
OCTET_TAG = st.one_of(
    st.sampled_from(sorted(t for t in Tag if t not in TLV_TYPES)),
    st.integers(0x1400, 0x3FFF),
    st.integers(0, 0xFFFF).filter(lambda t: t not in TLV_TYPES),
)
OCTET_TLV = st.builds(Tlv, OCTET_TAG, st.binary(max_size=300))
TLV = st.one_of(TYPED_TLV, OCTET_TLV)
TLVS = st.lists(TLV, max_size=5)


@st.composite
def pdus(draw: st.DrawFn, command_id: int | None = None) -> Pdu:
    if command_id is None:
        command_id = draw(st.sampled_from(ALL_IDS))
    cls = PDU_CLASSES[command_id]
    layout = _BODIES[command_id][1]
    common = {"sequence_number": draw(U32), "command_status": draw(U32)}
    if cls.is_response and layout and draw(st.integers(0, 4)) == 0:
        # Body-less response (allowed when the SMSC answers an error): first field None, the
        # other fields at their defaults and no TLVs (a TLV *is* body).
        return cls(**common, **{layout[0][0]: None})
    fields = {row[0]: draw(_field(row)) for row in layout}
    return cls(**common, **fields, tlvs=draw(TLVS))


# ---------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("command_id", ALL_IDS, ids=lambda c: CommandId(c).name.lower())
@ROUNDTRIP
@given(data=st.data())
def test_roundtrip_every_pdu_type(command_id: int, data: st.DataObject) -> None:
    p = data.draw(pdus(command_id))
    b = p.encode()
    assert isinstance(b, bytes)
    assert struct.unpack_from(">IIII", b) == (
        len(b),
        command_id,
        p.command_status,
        p.sequence_number,
    )
    q = decode(b)
    assert type(q) is type(p)
    assert q == p
    assert q.encode() == b


@FUZZ
@given(pdus())
def test_roundtrip_mixed(p: Pdu) -> None:
    b = p.encode()
    assert decode(b) == p
    assert decode(b).encode() == b


def test_every_command_is_covered() -> None:
    assert {c for c in CommandId} == set(PDU_CLASSES) == set(_BODIES)


def test_limits_exactly_at_the_edge_roundtrip() -> None:
    """Fields filled to their maxima (one octet below each C-string limit, 255-octet SM)."""
    for command_id, (_, layout) in _BODIES.items():
        fields: dict[str, Any] = {}
        for row in layout:
            kind = row[1]
            if kind == "C":
                fields[row[0]] = "\xff" * (row[2] - 1)
            elif kind == "T":
                fields[row[0]] = "9" * 16
            elif kind == "U8":
                fields[row[0]] = 255
            elif kind == "SM":
                fields[row[0]] = bytes(range(255))
            elif kind == "DESTS":
                fields[row[0]] = [
                    DestAddress(1, 255, 255, "1" * 20),
                    DestAddress(2, dl_name="l" * 20),
                ] * 127
            elif kind == "UNSUC":
                fields[row[0]] = [UnsuccessSme(255, 255, "2" * 20, 0xFFFFFFFF)] * 255
        p = PDU_CLASSES[command_id](
            sequence_number=0xFFFFFFFF,
            command_status=0xFFFFFFFF,
            tlvs=[Tlv(0x3FFF, b"\x00" * 0xFFFF)],
            **fields,
        )
        b = p.encode()
        assert decode(b, max_length=len(b)) == p
        assert decode(b, max_length=len(b)).encode() == b
        with pytest.raises(PduError) as ei:
            decode(b, max_length=len(b) - 1)
        assert ei.value.command_status == CommandStatus.ESME_RINVCMDLEN


# ---------------------------------------------------------------------------------------
# Fuzzing the decoder


def _decode_total(b: bytes) -> None:
    """decode() either returns a PDU that re-encodes to the same bytes, or raises PduError."""
    try:
        p = decode(b)
    except PduError as e:
        assert isinstance(e.command_status, int) and e.command_status != 0
        if len(b) >= 16:
            assert e.sequence_number == int.from_bytes(b[12:16], "big")
            assert e.command_id == int.from_bytes(b[4:8], "big")
        return
    assert isinstance(p, Pdu)
    assert p.encode() == b


@FUZZ
@given(st.binary(max_size=400))
def test_decode_arbitrary_bytes(b: bytes) -> None:
    _decode_total(b)


@FUZZ
@given(st.sampled_from(ALL_IDS), U32, U32, st.binary(max_size=300))
def test_decode_arbitrary_body_with_valid_header(
    command_id: int, status: int, seq: int, body: bytes
) -> None:
    """Random bodies behind a consistent header reach the body decoders (raw random bytes rarely do)."""
    _decode_total(struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body)


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(
        st.just("set"),
        st.integers(0, 10**6),
        st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFF]),
    ),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.booleans()),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=12), st.booleans()),
    st.tuples(
        st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=4)
    ),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 4)),
)


def _mutate(b: bytes, m: tuple, fix_length: bool) -> bytes:
    op = m[0]
    out = bytearray(b)
    if op == "flip":
        out[m[1] % len(out)] ^= m[2]
    elif op == "set":
        out[m[1] % len(out)] = m[2]
    elif op == "truncate":
        del out[m[1] % len(out) :]
    elif op == "extend":
        out += m[1]
    elif op == "insert":
        i = m[1] % (len(out) + 1)
        out[i:i] = m[2]
    elif op == "delete":
        i = m[1] % len(out)
        del out[i : i + m[2]]
    if fix_length and len(out) >= 4:
        out[0:4] = len(out).to_bytes(4, "big")
    return bytes(out)


@FUZZ
@given(pdus(), st.lists(MUTATION, min_size=1, max_size=3), st.booleans())
def test_decode_mutated_valid_pdu(
    p: Pdu, mutations: list[tuple], fix_length: bool
) -> None:
    b = p.encode()
    for m in mutations:
        if not b:
            break
        b = _mutate(b, m, fix_length)
    _decode_total(b)


@SMALL
@given(pdus(), st.integers(0, 0xFFFFFFFF))
def test_decode_wrong_command_length(p: Pdu, length: int) -> None:
    b = p.encode()
    assume(length != len(b))
    bad = length.to_bytes(4, "big") + b[4:]
    with pytest.raises(PduError) as ei:
        decode(bad)
    assert ei.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert ei.value.sequence_number == p.sequence_number


@SMALL
@given(pdus())
def test_decode_every_prefix_of_a_valid_pdu(p: Pdu) -> None:
    """Every truncation (with command_length patched to match) decodes cleanly or is refused."""
    b = p.encode()
    for n in range(len(b) - 1, -1, -max(1, len(b) // 40)):
        _decode_total(_mutate(b, ("truncate", n, False), True) if n >= 4 else b[:n])


@FUZZ
@given(
    pdus(),
    st.lists(MUTATION, max_size=3),
    st.one_of(st.binary(max_size=40), st.just(b"\0" * 40), st.just(b"\x04\x27\x00\x01\x02")),
)
def test_decoder_reads_nothing_past_its_frame(p: Pdu, mutations: list[tuple], after: bytes) -> None:
    """The session decodes frames inside its read buffer: a decoder given the frame's end
    must succeed with the same PDU as decoding the frame alone, or fail as it does."""
    b = p.encode()
    for m in mutations:
        if len(b) < 16:
            break
        b = _mutate(b, m, True)
    assume(len(b) >= 16)
    length, cid, status, seq = struct.unpack_from(">IIII", b)
    decoder = DECODERS.get(cid)
    assume(decoder is not None and length == len(b))
    try:
        alone: Pdu | None = decode(b)
    except PduError:
        alone = None
    try:
        in_place: Pdu | None = decoder(b + after, 16, length, status, seq)
    except (PduError, IndexError, struct.error):
        in_place = None
    assert in_place == alone


def test_receipt_decoder_reads_nothing_past_its_frame() -> None:
    """Every truncation of a receipt (TLVs with the fast paths), followed by bytes that
    would complete its last TLV, decodes in place exactly as alone."""
    receipt = PDU_CLASSES[CommandId.DELIVER_SM](
        sequence_number=7,
        esm_class=4,
        source_addr="4915112345678",
        destination_addr="Acme",
        short_message=b"id:1f sub:001 dlvrd:001 stat:DELIVRD err:000 text:",
        tlvs=[Tlv(Tag.RECEIPTED_MESSAGE_ID, "1f"), Tlv(Tag.MESSAGE_STATE, 2)],
    ).encode()
    decoder = DECODERS[CommandId.DELIVER_SM]
    for n in range(16, len(receipt) + 1):
        b = _mutate(receipt, ("truncate", n, False), True)
        for after in (b"", b"\x02", b"\x00" * 8, b"\x00\x01\x02", receipt):
            try:
                alone: Pdu | None = decode(b)
            except PduError:
                alone = None
            try:
                in_place: Pdu | None = decoder(b + after, 16, len(b), 0, 7)
            except (PduError, IndexError, struct.error):
                in_place = None
            assert in_place == alone, (n, after)


# ---------------------------------------------------------------------------------------
# Encoding invalid values


def _layout_rows(kind: str) -> list[tuple[int, tuple]]:
    return [
        (cid, row)
        for cid, (_, layout) in _BODIES.items()
        for row in layout
        if row[1] == kind
    ]


U8_FIELDS = _layout_rows("U8")
C_FIELDS = _layout_rows("C") + _layout_rows("T")


def _raises_pdu_error(p: Any) -> PduError:
    try:
        p.encode()
    except PduError as e:
        assert e.command_status != 0
        return e
    except Exception as e:  # noqa: BLE001 - the failure we are looking for
        pytest.fail(f"encode raised {type(e).__name__} instead of PduError: {e}")
    pytest.fail(f"encode accepted an invalid value: {p!r}")


@pytest.mark.parametrize(
    ("command_id", "row"),
    U8_FIELDS,
    ids=[f"{_BODIES[c][0]}.{r[0]}" for c, r in U8_FIELDS],
)
@pytest.mark.parametrize("value", [-1, 256, 1 << 40])
def test_encode_u8_out_of_range(command_id: int, row: tuple, value: int) -> None:
    _raises_pdu_error(PDU_CLASSES[command_id](**{row[0]: value}))


@pytest.mark.parametrize(
    ("command_id", "row"),
    C_FIELDS,
    ids=[f"{_BODIES[c][0]}.{r[0]}" for c, r in C_FIELDS],
)
def test_encode_invalid_c_strings(command_id: int, row: tuple) -> None:
    cls, name, limit = PDU_CLASSES[command_id], row[0], row[2]
    _raises_pdu_error(cls(**{name: "1" * limit}))  # no room for the NUL
    _raises_pdu_error(cls(**{name: "1" * (limit + 20)}))
    _raises_pdu_error(cls(**{name: "\u20ac"}))  # outside Latin-1
    _raises_pdu_error(cls(**{name: "a\0b"}))  # embedded NUL would end the field early
    if row[1] == "T":
        _raises_pdu_error(cls(**{name: "1" * 15}))
        _raises_pdu_error(cls(**{name: "1"}))


@pytest.mark.parametrize(
    "command_id",
    [c for c, (_, lay) in _BODIES.items() if any(r[1] == "SM" for r in lay)],
)
def test_encode_short_message_too_long(command_id: int) -> None:
    e = _raises_pdu_error(PDU_CLASSES[command_id](short_message=b"x" * 256))
    assert e.command_status == CommandStatus.ESME_RINVMSGLEN


def test_encode_too_many_destinations() -> None:
    _raises_pdu_error(
        PDU_CLASSES[CommandId.SUBMIT_MULTI](
            dest_addresses=[DestAddress(1, 0, 0, "1")] * 255
        )
    )
    _raises_pdu_error(
        PDU_CLASSES[CommandId.SUBMIT_MULTI](dest_addresses=[DestAddress(3)])
    )
    _raises_pdu_error(
        PDU_CLASSES[CommandId.SUBMIT_MULTI](
            dest_addresses=[DestAddress(1, address="1" * 21)]
        )
    )


INT_TAGS = sorted(t for t, k in TLV_TYPES.items() if k != "cstr")
CSTR_TAGS = sorted(t for t, k in TLV_TYPES.items() if k == "cstr")


@pytest.mark.parametrize("tag", INT_TAGS, ids=lambda t: Tag(t).name.lower())
def test_encode_int_tlv_invalid(tag: int) -> None:
    size = TLV_TYPES[tag]
    sm = PDU_CLASSES[CommandId.SUBMIT_SM]
    for bad in (-1, 1 << (8 * size), "1", b"\x01" * size, 1.0, None):
        e = _raises_pdu_error(sm(tlvs=[Tlv(tag, bad)]))
        assert e.command_status == CommandStatus.ESME_RINVOPTPARAMVAL


@pytest.mark.parametrize("tag", CSTR_TAGS, ids=lambda t: Tag(t).name.lower())
def test_encode_cstr_tlv_wrong_type(tag: int) -> None:
    sm = PDU_CLASSES[CommandId.SUBMIT_SM]
    for bad in (b"abc", 5, None):
        e = _raises_pdu_error(sm(tlvs=[Tlv(tag, bad)]))
        assert e.command_status == CommandStatus.ESME_RINVOPTPARAMVAL


def test_encode_cstr_tlv_non_latin1() -> None:
    """CODEC BUG (see report): a non-Latin-1 character in a C-string TLV leaks UnicodeEncodeError
    from _encode_tlvs (mandatory C-strings get a PduError via _cstr)."""
    for tag in CSTR_TAGS:
        _raises_pdu_error(
            PDU_CLASSES[CommandId.DELIVER_SM](tlvs=[Tlv(tag, "id-\u20ac")])
        )


def test_encode_octet_tlv_wrong_type() -> None:
    sm = PDU_CLASSES[CommandId.SUBMIT_SM]
    for tag in (Tag.MESSAGE_PAYLOAD, 0x1400, Tag.SOURCE_TELEMATICS_ID):
        for bad in ("text", 5, None):
            e = _raises_pdu_error(sm(tlvs=[Tlv(tag, bad)]))
            assert e.command_status == CommandStatus.ESME_RINVOPTPARAMVAL


def test_encode_tlv_value_too_long() -> None:
    e = _raises_pdu_error(
        PDU_CLASSES[CommandId.SUBMIT_SM](
            tlvs=[Tlv(Tag.MESSAGE_PAYLOAD, b"x" * 0x10000)]
        )
    )
    assert e.command_status == CommandStatus.ESME_RINVPARLEN


def test_encode_list_entry_ints_out_of_range() -> None:
    """CODEC BUG (see report): out-of-range ints inside submit_multi dest_address / submit_multi_resp
    unsuccess_sme entries leak ValueError / struct.error instead of PduError."""
    multi, multi_resp = (
        PDU_CLASSES[CommandId.SUBMIT_MULTI],
        PDU_CLASSES[CommandId.SUBMIT_MULTI_RESP],
    )
    for d in (DestAddress(1, 256, 0, "1"), DestAddress(1, 0, -1, "1")):
        _raises_pdu_error(multi(dest_addresses=[d]))
    for u in (
        UnsuccessSme(256, 0, "1", 0),
        UnsuccessSme(0, -1, "1", 0),
        UnsuccessSme(0, 0, "1", 1 << 32),
        UnsuccessSme(0, 0, "1", -1),
    ):
        _raises_pdu_error(multi_resp(message_id="1", unsuccess_smes=[u]))


def test_encode_header_and_tag_out_of_range() -> None:
    """CODEC BUG (see report): out-of-range sequence_number / command_status / TLV tag leak
    struct.error instead of PduError."""
    el = PDU_CLASSES[CommandId.ENQUIRE_LINK]
    for kw in (
        {"sequence_number": 1 << 32},
        {"sequence_number": -1},
        {"command_status": 1 << 32},
        {"command_status": -1},
        {"tlvs": [Tlv(0x10000, b"")]},
        {"tlvs": [Tlv(-1, b"")]},
    ):
        _raises_pdu_error(el(**kw))


# ---------------------------------------------------------------------------------------
# Asymmetries between decode and encode (each one breaks decode(b).encode() == b or
# decode(p.encode()) == p for some input).


def test_decode_refuses_255_destinations() -> None:
    """CODEC BUG (see report): decode accepts number_of_dests=255, which encode refuses.

    SMPP 3.4 section 4.5.1: "A maximum of 254 destination addresses are allowed". decode must
    refuse what encode refuses (ESME_RINVNUMDESTS), or decode(b).encode() raises.
    """
    body = (
        b"\x00"
        + b"\x00\x00"
        + b"\x00"
        + b"\xff"
        + b"\x02L\x00" * 255
        + b"\x00" * 3
        + b"\x00\x00"
        + b"\x00" * 4
        + b"\x00"
    )
    b = struct.pack(">IIII", 16 + len(body), CommandId.SUBMIT_MULTI, 0, 9) + body
    with pytest.raises(PduError) as ei:
        decode(b)
    assert ei.value.command_status == CommandStatus.ESME_RINVNUMDESTS
    assert ei.value.sequence_number == 9


def test_bodyless_response_with_tlvs() -> None:
    """CODEC BUG (see report): a response whose first field is None ("no body") still writes
    its TLVs, right after the header where the mandatory fields belong, so the bytes do not
    decode back. Encoding must refuse the combination (or write the body)."""
    for command_id, (_, layout) in _BODIES.items():
        if not (command_id & RESPONSE_BIT and layout):
            continue
        p = PDU_CLASSES[command_id](
            sequence_number=5,
            command_status=8,
            tlvs=[Tlv(Tag.MESSAGE_STATE, 2)],
            **{layout[0][0]: None},
        )
        try:
            b = p.encode()
        except PduError:
            continue  # refusing is fine
        try:
            q = decode(b)
        except PduError as e:
            pytest.fail(
                f"{p.command_name}: encode() wrote {b.hex()}, which decode() refuses: {e}"
            )
        assert q == p, f"{p.command_name}: encode() wrote {b.hex()}"


def test_cstr_tlv_unterminated_value_ending_in_nul() -> None:
    """CODEC BUG (minor, see report): Tlv(tag, "abc\\0", terminated=False) encodes to the same
    octets as Tlv(tag, "abc") (terminated), so it cannot round-trip; encode must refuse it.

    (Embedded NULs as such must stay encodable: decode turns the octets "a\\0b\\0" into
    Tlv(tag, "a\\0b") and that has to re-encode identically; see the round-trip below.)
    """
    dsm = PDU_CLASSES[CommandId.DELIVER_SM]
    ok = dsm(tlvs=[Tlv(Tag.RECEIPTED_MESSAGE_ID, "a\0b")])
    assert decode(ok.encode()) == ok
    p = dsm(tlvs=[Tlv(Tag.RECEIPTED_MESSAGE_ID, "abc\0", False)])
    try:
        b = p.encode()
    except PduError:
        return
    assert decode(b) == p, f"encode() wrote {b.hex()}"


# ---------------------------------------------------------------------------------------
# make_response


REQUESTS = [c for c in ALL_IDS if not c & RESPONSE_BIT]


@pytest.mark.parametrize(
    "command_id", REQUESTS, ids=lambda c: CommandId(c).name.lower()
)
@SMALL
@given(seq=U32, status=st.sampled_from([0, 8, 0x58, 0xFF]))
def test_make_response(command_id: int, seq: int, status: int) -> None:
    req = PDU_CLASSES[command_id](sequence_number=seq)
    resp_id = command_id | RESPONSE_BIT
    if resp_id not in PDU_CLASSES:
        # outbind and alert_notification have no response in SMPP 3.4.
        assert command_id in (CommandId.OUTBIND, CommandId.ALERT_NOTIFICATION)
        assert response_class(command_id) is None
        with pytest.raises(ValueError):
            make_response(req, status)
        return
    resp = make_response(req, status)
    assert type(resp) is PDU_CLASSES[resp_id]
    assert resp.is_response and not req.is_response
    assert resp.command_id == resp_id
    assert resp.sequence_number == seq
    assert resp.command_status == status
    assert decode(resp.encode()) == resp


def test_make_response_fields_and_responses_have_no_response() -> None:
    req = PDU_CLASSES[CommandId.SUBMIT_SM](sequence_number=77)
    resp = make_response(req, message_id="abc")
    assert (
        resp.message_id == "abc"
        and resp.sequence_number == 77
        and resp.command_status == 0
    )
    for cid in ALL_IDS:
        if cid & RESPONSE_BIT:
            assert response_class(cid) is None
            with pytest.raises(ValueError):
                make_response(PDU_CLASSES[cid]())

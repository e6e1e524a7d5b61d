"""The codec against real-world PDUs (tests/corpus/pdus.jsonl, see tests/corpus/README.md).

Every well-formed record must decode to its recorded header, mandatory fields and TLVs and
re-encode byte-identically; every malformed record must be refused with a PduError that
carries a non-zero command_status (and the header's command_id / sequence_number).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.errors import PduError
from gateway.smpp.pdu import (
    PDU_CLASSES,
    TLV_TYPES,
    DestAddress,
    Pdu,
    Tlv,
    UnsuccessSme,
    decode,
)

CORPUS = Path(__file__).parent / "corpus" / "pdus.jsonl"


def _load() -> list[dict[str, Any]]:
    with CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


RECORDS = _load()
WELL_FORMED = [r for r in RECORDS if r["well_formed"]]
MALFORMED = [r for r in RECORDS if not r["well_formed"]]


def _params(records: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(r, id=r["id"]) for r in records]


def _tlv_wire_value(t: Tlv) -> bytes:
    """Our typed TLV value turned back into its wire octets (without the tag/length)."""
    kind = TLV_TYPES.get(t.tag)
    v = t.value
    if kind is None:
        assert isinstance(v, bytes), (
            f"untyped TLV 0x{t.tag:04x} must decode to bytes, got {v!r}"
        )
        return v
    if kind == "cstr":
        assert isinstance(v, str), (
            f"C-string TLV 0x{t.tag:04x} must decode to str, got {v!r}"
        )
        return v.encode("latin-1") + (b"\0" if t.terminated else b"")
    assert isinstance(v, int) and not isinstance(v, bool), (
        f"int TLV 0x{t.tag:04x}: {v!r}"
    )
    return v.to_bytes(kind, "big")


def _check_dest(got: DestAddress, want: dict[str, Any]) -> None:
    assert got.dest_flag == want["dest_flag"]
    if want["dest_flag"] == 1:
        assert (got.ton, got.npi, got.address) == (
            want["ton"],
            want["npi"],
            want["address"],
        )
    else:
        assert got.dl_name == want["dl_name"]
    unknown = set(want) - {"dest_flag", "ton", "npi", "address", "dl_name"}
    assert not unknown, f"corpus dest_address keys this test does not check: {unknown}"


def _check_unsuccess(got: UnsuccessSme, want: dict[str, Any]) -> None:
    assert got.ton == want["ton"]
    assert got.npi == want["npi"]
    assert got.address == want["address"]
    assert got.error_status_code == int(want["error_status_code"], 16)
    unknown = set(want) - {"ton", "npi", "address", "error_status_code"}
    assert not unknown, f"corpus unsuccess_sme keys this test does not check: {unknown}"


def _check_fields(pdu: Pdu, fields: dict[str, Any]) -> None:
    fields = dict(fields)
    if fields.pop("body_absent", False):
        # A body-less response: the codec puts None in the first mandatory field.
        first = _first_body_field(pdu)
        assert first is not None, "body_absent recorded for a PDU type without a body"
        assert getattr(pdu, first) is None
        assert pdu.tlvs == []
    # Reading aids, not values: short_message_text is a best-effort rendering.
    fields.pop("short_message_text", None)
    if "short_message_hex" in fields:
        sm = bytes.fromhex(fields.pop("short_message_hex"))
        assert isinstance(pdu.short_message, bytes)
        assert pdu.short_message == sm
    if "sm_length" in fields:
        assert len(pdu.short_message) == fields.pop("sm_length")
    if "udh_hex" in fields:
        udh = bytes.fromhex(fields.pop("udh_hex"))
        assert pdu.short_message.startswith(udh)
        assert pdu.short_message[0] + 1 == len(
            udh
        )  # UDHL counts the octets after itself
    if "dest_addresses" in fields:
        want = fields.pop("dest_addresses")
        got = pdu.dest_addresses
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _check_dest(g, w)
    if "number_of_dests" in fields:
        assert len(pdu.dest_addresses) == fields.pop("number_of_dests")
    if "unsuccess_smes" in fields:
        want = fields.pop("unsuccess_smes")
        got = pdu.unsuccess_smes
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _check_unsuccess(g, w)
    if "no_unsuccess" in fields:
        assert len(pdu.unsuccess_smes) == fields.pop("no_unsuccess")
    for name, want in fields.items():
        assert name in type(pdu).__struct_fields__, (
            f"{type(pdu).__name__} has no field {name}"
        )
        got = getattr(pdu, name)
        if isinstance(want, str):
            assert isinstance(got, str), f"{name}: {got!r} is not a str"
        else:
            assert isinstance(want, int) and not isinstance(want, bool), (name, want)
            assert isinstance(got, int), f"{name}: {got!r} is not an int"
        assert got == want, f"{name}: decoded {got!r}, corpus says {want!r}"


def _first_body_field(pdu: Pdu) -> str | None:
    base = set(Pdu.__struct_fields__)
    body = [f for f in type(pdu).__struct_fields__ if f not in base]
    return body[0] if body else None


def _check_tlvs(pdu: Pdu, tlvs: list[dict[str, Any]]) -> None:
    assert len(pdu.tlvs) == len(tlvs), [hex(t.tag) for t in pdu.tlvs]
    for got, want in zip(pdu.tlvs, tlvs, strict=True):
        assert isinstance(got, Tlv)
        assert got.tag == int(want["tag"], 16)
        raw = _tlv_wire_value(got)
        assert len(raw) == want["length"], f"TLV {want['tag']}"
        assert raw == bytes.fromhex(want["value_hex"]), f"TLV {want['tag']}"


def test_corpus_is_complete() -> None:
    """The README promises 122 records, 114 well-formed; ids are unique (they are test ids)."""
    assert len(RECORDS) == 122
    assert len(WELL_FORMED) == 114
    assert len(MALFORMED) == 8
    assert len({r["id"] for r in RECORDS}) == len(RECORDS)


@pytest.mark.parametrize("rec", _params(WELL_FORMED))
def test_well_formed_pdu_decodes_to_recorded_values(rec: dict[str, Any]) -> None:
    raw = bytes.fromhex(rec["hex"])
    assert len(raw) == rec["byte_length"] == rec["command_length"]
    pdu = decode(raw)
    command_id = int(rec["command_id"], 16)
    assert type(pdu) is PDU_CLASSES[command_id]
    assert pdu.command_id == command_id
    assert pdu.command_name == rec["command"] == CommandId(command_id).name.lower()
    assert pdu.command_status == int(rec["command_status"], 16)
    assert pdu.sequence_number == rec["sequence_number"]
    _check_fields(pdu, rec["fields"])
    _check_tlvs(pdu, rec["tlvs"])


@pytest.mark.parametrize("rec", _params(WELL_FORMED))
def test_well_formed_pdu_reencodes_identically(rec: dict[str, Any]) -> None:
    raw = bytes.fromhex(rec["hex"])
    pdu = decode(raw)
    assert pdu.encode() == raw
    # ...and the re-encoded bytes decode to an equal object (decode is a function).
    assert decode(pdu.encode()) == pdu


@pytest.mark.parametrize("rec", _params(MALFORMED))
def test_malformed_pdu_is_refused_with_typed_error(rec: dict[str, Any]) -> None:
    raw = bytes.fromhex(rec["hex"])
    try:
        pdu = decode(raw)
    except PduError as e:
        assert e.command_status != CommandStatus.ESME_ROK
        assert isinstance(e.command_status, int)
        # All 8 broken records have a readable 16-octet header: the error must carry it so the
        # peer's request can be answered (or nacked) by sequence number.
        assert len(raw) >= 16
        assert e.sequence_number == rec["sequence_number"]
        assert e.command_id == int(rec["command_id"], 16)
    except Exception as e:  # noqa: BLE001 - the failure we are looking for
        pytest.fail(f"decode raised {type(e).__name__} instead of PduError: {e}")
    else:  # pragma: no cover
        pytest.fail(f"malformed PDU decoded: {pdu!r} ({rec['anomalies']})")


def test_error_carries_sequence_number_when_header_readable() -> None:
    # Unknown command_id: header fine, nothing else.
    with pytest.raises(PduError) as ei:
        decode(bytes.fromhex("000000100000fffe0000000000001234"))
    assert ei.value.command_status == CommandStatus.ESME_RINVCMDID
    assert ei.value.sequence_number == 0x1234
    assert ei.value.command_id == 0x0000FFFE

    # Body error (submit_sm cut inside the mandatory fields): sequence number still known.
    with pytest.raises(PduError) as ei:
        decode(bytes.fromhex("0000001300000004000000000000abcd000101"))
    assert ei.value.command_status != 0
    assert ei.value.sequence_number == 0xABCD
    assert ei.value.command_id == CommandId.SUBMIT_SM

    # command_length disagrees with the bytes: still answerable by sequence.
    with pytest.raises(PduError) as ei:
        decode(bytes.fromhex("00000020000000150000000000000007"))
    assert ei.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert ei.value.sequence_number == 7
    assert ei.value.command_id == CommandId.ENQUIRE_LINK


@pytest.mark.parametrize("n", [0, 1, 15])
def test_error_without_readable_header_has_no_sequence_number(n: int) -> None:
    with pytest.raises(PduError) as ei:
        decode(bytes.fromhex("0000001000000015000000000000002a")[:n])
    assert ei.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert ei.value.sequence_number is None
    assert ei.value.command_id is None

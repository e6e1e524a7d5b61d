"""What an ESME receives from a foreign SMSC is read leniently (SMPP robustness principle).

The codec is strict for what we send and for the requests an SMSC receives; a response, or a
deliver_sm / data_sm received in the ESME role, that breaks a strict rule but can still be
read is handled as received and reported as a tolerated InvalidPdu. Refusing them did harm:
an accepted submit_sm looked retryable (duplicate SMS), a bind the SMSC accepted looked like
a credential failure, a receipt or MO was refused with a permanent deliver_sm_resp status.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from gateway.smpp import pdu as P
from gateway.smpp import session as S
from gateway.smpp.constants import CommandId, CommandStatus, Tag
from gateway.smpp.errors import PduError
from gateway.smpp.esme import Outcome, classify


def frame(cid: int, body: bytes, seq: int, status: int = 0) -> bytes:
    return P.HEADER.pack(16 + len(body), cid, status, seq) + body


def bound_esme(on_response=None) -> S.Session:
    esme = S.Session(S.Role.ESME, on_response=on_response)
    bind = esme.send(P.BindTransceiver(system_id="gw", password="pw"))
    esme.receive_data(P.BindTransceiverResp(sequence_number=bind.sequence_number, system_id="x").encode())
    esme.next_events()
    esme.data_to_send()
    assert esme.state is S.State.BOUND_TRX
    return esme


def submit(esme: S.Session) -> P.Pdu:
    req = esme.send(P.SubmitSm(destination_addr="4915112345", short_message=b"hi"))
    esme.data_to_send()
    return req


# ---- 1. an ESME_ROK submit_sm_resp whose body breaks the codec's rules -------------------

SUBMIT_RESP_BODIES = {
    "message_id without NUL": (b"abc123", "abc123"),
    "message_id of 70 octets": (b"9" * 70 + b"\0", "9" * 70),
    "message_id of 70 octets without NUL": (b"9" * 70, "9" * 70),
    # the last TLV cut short (stray octets, or running past the body): the id is kept
    "TLV header cut short": (b"abc\0\x00\x1e\x00", "abc"),
    "TLV runs past the body": (b"abc\0\x00\x1e\x00\x09ab", "abc"),
}


@pytest.mark.parametrize(("body", "message_id"), SUBMIT_RESP_BODIES.values(), ids=SUBMIT_RESP_BODIES)
def test_accepted_submit_with_odd_body_completes_as_accepted(body, message_id):
    got = []
    esme = bound_esme(on_response=lambda resp, req: got.append((resp, req)))
    req = submit(esme)
    esme.receive_data(frame(CommandId.SUBMIT_SM_RESP, body, req.sequence_number))
    ((resp, request),) = got
    assert request is req
    assert resp.command_id == CommandId.SUBMIT_SM_RESP  # not a generic_nack
    assert resp.command_status == CommandStatus.ESME_ROK
    assert resp.message_id == message_id
    result = classify(resp)
    assert result.outcome is Outcome.ACCEPTED and not result.throttled
    (ev,) = esme.next_events()  # the anomaly is still reported, without changing the outcome
    assert isinstance(ev, S.InvalidPdu) and ev.tolerated and not ev.fatal
    assert "tolerated" in str(ev.error)
    assert esme.outstanding == 0 and esme.window_used == 0
    assert not esme.data_to_send()  # a response is never answered


def test_unreadable_response_keeps_a_refusal_status_too():
    esme = bound_esme()
    req = submit(esme)
    body = b"\0\x00\x1e"  # body-ish bytes after the message_id: unreadable
    esme.receive_data(frame(CommandId.SUBMIT_SM_RESP, body, req.sequence_number, CommandStatus.ESME_RTHROTTLED))
    inv, resp = esme.next_events()
    assert isinstance(inv, S.InvalidPdu) and inv.tolerated
    assert isinstance(resp, S.ResponseReceived) and resp.request is req
    assert (resp.pdu.command_id, resp.pdu.command_status) == (CommandId.SUBMIT_SM_RESP, CommandStatus.ESME_RTHROTTLED)


def test_unreadable_generic_nack_keeps_its_header_status():
    esme = bound_esme()
    req = submit(esme)
    esme.receive_data(frame(CommandId.GENERIC_NACK, b"\xff", req.sequence_number, CommandStatus.ESME_RTHROTTLED))
    inv, resp = esme.next_events()
    assert isinstance(inv, S.InvalidPdu) and inv.tolerated
    assert resp.pdu.command_id == CommandId.GENERIC_NACK
    assert resp.pdu.command_status == CommandStatus.ESME_RTHROTTLED


def test_unreadable_response_to_nothing_outstanding_is_only_reported():
    esme = bound_esme()
    # query_sm_resp cut inside its mandatory fields: unreadable even leniently
    esme.receive_data(frame(CommandId.QUERY_SM_RESP, b"abc\0", 999))
    (ev,) = esme.next_events()
    assert isinstance(ev, S.InvalidPdu) and not ev.tolerated
    assert not esme.data_to_send()


# ---- 2. bind responses with a long or unterminated system_id -----------------------------

BIND_RESP_BODIES = {
    "system_id of 20 octets": (b"S" * 20 + b"\0", "S" * 20),
    "system_id without NUL": (b"SMSC", "SMSC"),
    "system_id of 20 octets without NUL, then nothing": (b"S" * 20, "S" * 20),
    "long system_id + TLV of the wrong length": (
        b"S" * 17 + b"\0" + struct.pack(">HH", Tag.SC_INTERFACE_VERSION, 2) + b"\x00\x34",
        "S" * 17,
    ),
}


@pytest.mark.parametrize(
    ("mode", "state"),
    [
        (P.BindTransceiver, S.State.BOUND_TRX),
        (P.BindTransmitter, S.State.BOUND_TX),
        (P.BindReceiver, S.State.BOUND_RX),
    ],
)
@pytest.mark.parametrize(("body", "system_id"), BIND_RESP_BODIES.values(), ids=BIND_RESP_BODIES)
def test_bind_accepted_with_odd_system_id_binds(mode, state, body, system_id):
    esme = S.Session(S.Role.ESME)
    bind = esme.send(mode(system_id="gw", password="pw"))
    esme.receive_data(frame(bind.command_id | 0x80000000, body, bind.sequence_number))
    events = esme.next_events()
    assert isinstance(events[0], S.InvalidPdu) and events[0].tolerated
    (resp,) = [e for e in events if isinstance(e, S.ResponseReceived)]
    assert resp.request is bind and resp.pdu.command_status == 0
    assert resp.pdu.system_id == system_id
    assert esme.state is state


def test_bind_refused_with_unreadable_body_stays_refused():
    esme = S.Session(S.Role.ESME)
    bind = esme.send(P.BindTransceiver(system_id="gw", password="pw"))
    esme.receive_data(frame(CommandId.BIND_TRANSCEIVER_RESP, b"x\0\x02", bind.sequence_number, CommandStatus.ESME_RINVPASWD))
    resp = esme.next_events()[-1]
    assert resp.pdu.command_status == CommandStatus.ESME_RINVPASWD and esme.state is S.State.OPEN


# ---- 3. deliver_sm / data_sm received by an ESME ------------------------------------------

RECEIPT = b"id:1 sub:001 dlvrd:001 submit date:2401010000 done date:2401010000 stat:DELIVRD err:000 text:x"


def deliver_body(source=b"4915112345", validity=b"", tlvs=b"", sm=RECEIPT) -> bytes:
    return (
        b"\0" + b"\x01\x01" + source + b"\0" + b"\x01\x01" + b"Acme\0"
        + b"\x04\x00\x00" + b"\0" + validity + b"\0" + b"\x00\x00\x00\x00" + bytes([len(sm)]) + sm + tlvs
    )


UMR_1_OCTET = struct.pack(">HHB", Tag.USER_MESSAGE_REFERENCE, 1, 9)
DELIVER_BODIES = {
    "user_message_reference of 1 octet": (deliver_body(tlvs=UMR_1_OCTET), CommandStatus.ESME_RINVPARLEN),
    "source_addr of 25 characters": (deliver_body(source=b"4" * 25), CommandStatus.ESME_RINVSRCADR),
    "validity_period of 10 characters": (deliver_body(validity=b"0000000000"), CommandStatus.ESME_RINVEXPIRY),
    "all three": (
        deliver_body(source=b"4" * 21, validity=b"0000000000", tlvs=UMR_1_OCTET),
        CommandStatus.ESME_RINVSRCADR,
    ),
}


@pytest.mark.parametrize(("body", "strict_status"), DELIVER_BODIES.values(), ids=DELIVER_BODIES)
def test_odd_deliver_sm_reaches_the_application_unanswered(body, strict_status):
    raw = frame(CommandId.DELIVER_SM, body, 77)
    with pytest.raises(PduError) as ei:  # the codec itself stays strict
        P.decode(raw)
    assert ei.value.command_status == strict_status
    esme = bound_esme()
    esme.receive_data(raw)
    inv, req = esme.next_events()
    assert isinstance(inv, S.InvalidPdu) and inv.tolerated
    assert isinstance(req, S.RequestReceived) and req.pdu.command_id == CommandId.DELIVER_SM
    assert req.pdu.sequence_number == 77 and req.pdu.short_message == RECEIPT
    assert not esme.data_to_send()  # the application answers, with the status it decides


def test_lenient_deliver_sm_fields_and_raw_tlv():
    esme = bound_esme()
    esme.receive_data(frame(CommandId.DELIVER_SM, DELIVER_BODIES["all three"][0], 5))
    pdu = esme.next_events()[-1].pdu
    assert pdu.source_addr == "4" * 21 and pdu.validity_period == "0000000000"
    # A standard integer TLV of a non-standard length is kept raw, as an unknown tag is.
    assert pdu.tlvs == [P.Tlv(Tag.USER_MESSAGE_REFERENCE, b"\x09")]
    assert pdu.tlv(Tag.USER_MESSAGE_REFERENCE) == b"\x09"


def test_odd_data_sm_reaches_the_esme_application():
    body = (
        b"\0\x01\x01" + b"4" * 30 + b"\0\x01\x01Acme\0\x04\x00\x00"
        + struct.pack(">HH", Tag.RECEIPTED_MESSAGE_ID, 2) + b"1\0"
        + struct.pack(">HH", Tag.MESSAGE_STATE, 2) + b"\x00\x02"
    )
    esme = bound_esme()
    esme.receive_data(frame(CommandId.DATA_SM, body, 8))
    inv, req = esme.next_events()
    assert inv.tolerated and isinstance(req, S.RequestReceived)
    assert req.pdu.tlvs == [P.Tlv(Tag.RECEIPTED_MESSAGE_ID, "1"), P.Tlv(Tag.MESSAGE_STATE, b"\x00\x02")]
    assert not esme.data_to_send()


def test_deliver_sm_unreadable_even_leniently_is_still_refused():
    esme = bound_esme()
    # cut inside its mandatory fields: unreadable even leniently
    esme.receive_data(frame(CommandId.DELIVER_SM, deliver_body()[:12], 9))
    (ev,) = esme.next_events()
    assert isinstance(ev, S.InvalidPdu) and not ev.tolerated
    answer = P.decode(esme.data_to_send())
    assert answer.command_id == P.GenericNack.command_id and answer.sequence_number == 9


def test_smsc_role_stays_strict_for_requests():
    smsc = S.Session(S.Role.SMSC)
    smsc.state = S.State.BOUND_TRX
    # data_sm from an ESME with a wrong-length TLV: refused with the codec's status.
    body = b"\0\x01\x011\0\x01\x012\0\x00\x00\x00" + UMR_1_OCTET
    smsc.receive_data(frame(CommandId.DATA_SM, body, 3))
    (ev,) = smsc.next_events()
    assert isinstance(ev, S.InvalidPdu) and not ev.tolerated
    answer = P.decode(smsc.data_to_send())
    assert (answer.command_id, answer.command_status) == (CommandId.DATA_SM_RESP, CommandStatus.ESME_RINVPARLEN)


def test_decode_lenient_is_strict_for_other_requests():
    bad = frame(CommandId.SUBMIT_SM, deliver_body(source=b"4" * 25), 1)
    for decode in (P.decode, P.decode_lenient):
        with pytest.raises(PduError) as ei:
            decode(bad)
        assert ei.value.command_status == CommandStatus.ESME_RINVSRCADR


def test_corpus_record_the_receiver_tolerates():
    """cloudhopper-10, a submit_sm_resp whose message_id "9" lacks its NUL, is malformed
    in the corpus and `decode` refuses it; the receiving side reads message_id "9"."""
    corpus = Path(__file__).parent / "corpus" / "pdus.jsonl"
    (rec,) = [r for r in map(json.loads, corpus.read_text().splitlines()) if r["id"] == "cloudhopper-10"]
    raw = bytes.fromhex(rec["hex"])
    with pytest.raises(PduError):
        P.decode(raw)
    assert P.decode_lenient(raw).message_id == "9"


def _corpus_frame(pdu_id: str) -> bytes:
    path = Path(__file__).parent / "corpus" / "pdus.jsonl"
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry["id"] == pdu_id:
            return bytes.fromhex(entry["hex"])
    raise LookupError(pdu_id)


def test_a_receipt_whose_last_tlv_overruns_the_body_still_arrives():
    """A production SMSC's receipt (corpus cloudhopper-27): receipted_message_id declares 65
    octets and 5 remain ("3005" and its NUL). Refused, the SMSC takes the deliver_sm_resp
    error as final and the receipt is lost; read leniently it keeps what is there."""
    raw = _corpus_frame("cloudhopper-27")
    with pytest.raises(PduError):
        P.decode(raw)  # the strict codec still says what is wrong with it
    esme = bound_esme()
    esme.receive_data(raw)
    inv, req = esme.next_events()
    assert inv.tolerated and isinstance(req, S.RequestReceived)
    assert req.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == "3005" and req.pdu.tlv(Tag.MESSAGE_STATE) == 2
    assert esme.data_to_send() == b""  # nothing answered by the session itself


def test_stray_octets_after_the_last_tlv_are_ignored_in_a_received_deliver_sm():
    body = P.DeliverSm(esm_class=4, short_message=b"x", tlvs=[P.Tlv(Tag.MESSAGE_STATE, 2)]).encode()[16:]
    esme = bound_esme()
    esme.receive_data(frame(CommandId.DELIVER_SM, body + b"\x00\x01", seq=9))
    inv, req = esme.next_events()
    assert inv.tolerated and req.pdu.tlvs == [P.Tlv(Tag.MESSAGE_STATE, 2)]

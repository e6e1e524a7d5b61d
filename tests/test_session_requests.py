"""Session.on_request (plain message traffic as handler calls) and send_encoded_response."""

from __future__ import annotations

import pytest

from gateway.smpp import pdu as P
from gateway.smpp import session as S
from gateway.smpp.constants import CommandStatus
from gateway.smpp.errors import PduError, ProtocolError


def pump(src: S.Session, dst: S.Session) -> list:
    dst.receive_data(src.data_to_send())
    return dst.next_events()


def bound_pair(esme_kw=None, smsc_kw=None, mode=P.BindTransceiver):
    esme = S.Session(S.Role.ESME, **(esme_kw or {}))
    smsc = S.Session(S.Role.SMSC, **(smsc_kw or {}))
    esme.send(mode(system_id="gw", password="pw", interface_version=0x34))
    (ev,) = pump(esme, smsc)
    assert isinstance(ev, S.RequestReceived) and smsc.state is S.State.BINDING
    smsc.send(P.make_response(ev.pdu, system_id="smsc"))
    (resp,) = pump(smsc, esme)
    assert isinstance(resp, S.ResponseReceived) and esme.bound and smsc.bound
    return esme, smsc


def sm(**kw) -> P.Pdu:
    return P.SubmitSm(destination_addr="4915112345", short_message=b"hello", **kw)


def receipt(**kw) -> P.Pdu:
    return P.DeliverSm(source_addr="4915112345", esm_class=4, short_message=b"id:1", **kw)


def test_on_request_gets_message_traffic_in_wire_order_without_events():
    got = []
    esme, smsc = bound_pair(smsc_kw={"on_request": got.append})
    a = esme.send(sm())
    link = esme.send(P.EnquireLink())
    b = esme.send(P.DataSm(destination_addr="49"))
    c = esme.send(sm())
    events = pump(esme, smsc)
    assert [type(e) for e in events] == [S.LinkChecked]  # enquire_link: answered, an event
    assert [p.sequence_number for p in got] == [a.sequence_number, b.sequence_number, c.sequence_number]
    assert [p.command_id for p in got] == [a.command_id, b.command_id, c.command_id]
    assert got[0].destination_addr == "4915112345"
    # the enquire_link_resp was queued, nothing else: the handler answers the rest
    (resp,) = pump(smsc, esme)
    assert isinstance(resp, S.ResponseReceived) and resp.request is link
    assert esme.outstanding == 3


def test_on_request_in_the_esme_role_takes_receipts_and_alerts():
    got = []
    esme, smsc = bound_pair(esme_kw={"on_request": got.append})
    smsc.send(receipt())
    smsc.send(P.AlertNotification(source_addr="1", esme_addr="2"))
    smsc.send(P.DataSm(destination_addr="49"))
    assert pump(smsc, esme) == []
    assert [p.command_id for p in got] == [
        P.DeliverSm.command_id,
        P.AlertNotification.command_id,
        P.DataSm.command_id,
    ]


def test_on_request_leaves_binds_refusals_and_invalid_pdus_to_events():
    got = []
    esme = S.Session(S.Role.ESME)
    smsc = S.Session(S.Role.SMSC, on_request=got.append)
    # before the bind: a submit_sm is refused, not handed over
    smsc.receive_data(sm(sequence_number=7).encode())
    (ev,) = smsc.next_events()
    assert isinstance(ev, S.InvalidPdu) and not ev.tolerated
    assert P.decode(smsc.data_to_send()).command_status == CommandStatus.ESME_RINVBNDSTS
    # the bind itself stays an event
    esme.send(P.BindTransmitter(system_id="gw", password="pw"))
    (ev,) = pump(esme, smsc)
    assert isinstance(ev, S.RequestReceived) and got == []
    smsc.send(P.make_response(ev.pdu, system_id="smsc"))
    pump(smsc, esme)
    # a submit_sm that fails to decode is answered by the session, as without the handler
    whole = sm(sequence_number=9).encode()
    bad = (23).to_bytes(4, "big") + whole[4:20] + b"\xff" * 3  # a body cut short
    plain = S.Session(S.Role.SMSC)
    plain.state = S.State.BOUND_TX
    plain.receive_data(bad)
    expected_events = [type(e) for e in plain.next_events()]
    expected_out = plain.data_to_send()
    smsc.receive_data(bad)
    assert [type(e) for e in smsc.next_events()] == expected_events == [S.InvalidPdu]
    assert smsc.data_to_send() == expected_out and got == []
    # deliver_sm is not legal for an SMSC to receive: refused, not handed over
    smsc.receive_data(receipt(sequence_number=11).encode())
    (ev,) = smsc.next_events()
    assert isinstance(ev, S.InvalidPdu) and got == []


def test_on_request_gets_a_leniently_decoded_receipt_after_its_event():
    """A deliver_sm the strict codec refuses (a source_addr of 25 characters) is read
    leniently in the ESME role: the tolerated InvalidPdu stays an event, the PDU goes to
    the handler, and nothing is answered by the session."""
    got = []
    esme, smsc = bound_pair(esme_kw={"on_request": got.append})
    good = receipt(sequence_number=5).encode()
    body = good[16:].replace(b"4915112345\0", b"4" * 25 + b"\0", 1)
    frame = P.HEADER.pack(16 + len(body), P.DeliverSm.command_id, 0, 5) + body
    with pytest.raises(PduError):
        P.decode(frame)
    esme.receive_data(frame)
    (ev,) = esme.next_events()
    assert isinstance(ev, S.InvalidPdu) and ev.tolerated
    (pdu,) = got
    assert pdu.sequence_number == 5 and pdu.source_addr == "4" * 25
    assert not esme.data_to_send()


def test_a_failing_request_handler_loses_no_frames():
    seen = []

    def handler(pdu):
        seen.append(pdu.sequence_number)
        if len(seen) == 1:
            raise RuntimeError("application bug")

    esme, smsc = bound_pair(smsc_kw={"on_request": handler})
    reqs = [esme.send(sm()) for _ in range(3)]
    with pytest.raises(RuntimeError):
        smsc.receive_data(esme.data_to_send())
    smsc.receive_data(b"")  # what followed the failing frame is still buffered
    assert seen == [r.sequence_number for r in reqs]
    assert smsc.next_events() == []


def test_without_on_request_requests_stay_events():
    esme, smsc = bound_pair()
    a = esme.send(sm())
    (ev,) = pump(esme, smsc)
    assert isinstance(ev, S.RequestReceived) and ev.pdu.sequence_number == a.sequence_number


# ---- send_encoded_response ----------------------------------------------------------------


def test_send_encoded_response_queues_what_send_would():
    _, smsc = bound_pair()
    _, reference = bound_pair()
    smsc.send_encoded_response(P.SubmitSmResp.command_id, 42, b"abc\0")
    reference.send(P.SubmitSmResp(sequence_number=42, message_id="abc"))
    smsc.send_encoded_response(P.SubmitSmResp.command_id, 43, b"", CommandStatus.ESME_RINVDSTADR)
    reference.send(P.error_response(P.SubmitSm.command_id, 43, CommandStatus.ESME_RINVDSTADR))
    assert smsc.data_to_send() == reference.data_to_send()


def test_send_encoded_response_is_received_as_the_response():
    got = []
    esme, smsc = bound_pair(esme_kw={"on_response": lambda resp, req: got.append((resp, req))})
    req = esme.send(sm())
    pump(esme, smsc)
    smsc.send_encoded_response(P.SubmitSmResp.command_id, req.sequence_number, b"m-1\0")
    assert pump(smsc, esme) == []
    ((resp, request),) = got
    assert request is req and resp.message_id == "m-1" and esme.outstanding == 0


@pytest.mark.parametrize(
    "command_id",
    [
        P.BindTransmitterResp.command_id,
        P.BindReceiverResp.command_id,
        P.BindTransceiverResp.command_id,
        P.GenericNack.command_id,
        P.SubmitSm.command_id,
    ],
)
def test_send_encoded_response_refuses_what_may_answer_a_bind(command_id):
    _, smsc = bound_pair()
    with pytest.raises(ValueError):
        smsc.send_encoded_response(command_id, 1, b"\0")
    assert not smsc.has_output


def test_send_encoded_response_refuses_a_closed_session():
    esme, smsc = bound_pair()
    esme.send(P.Unbind())
    pump(esme, smsc)
    assert smsc.state is S.State.CLOSED
    smsc.data_to_send()
    with pytest.raises(ProtocolError):
        smsc.send_encoded_response(P.SubmitSmResp.command_id, 1, b"\0")
    assert not smsc.has_output


def test_send_encoded_response_numbered_as_a_pending_bind_takes_the_general_path():
    """A response carrying the sequence number of the peer's pending bind changes the state
    exactly as `send` does with the same bytes."""
    results = []
    for via_encoded in (False, True):
        esme, smsc = S.Session(S.Role.ESME), S.Session(S.Role.SMSC)
        bind = esme.send(P.BindTransmitter(system_id="gw", password="pw"))
        pump(esme, smsc)
        assert smsc.state is S.State.BINDING
        if via_encoded:
            smsc.send_encoded_response(P.SubmitSmResp.command_id, bind.sequence_number, b"\0")
        else:
            smsc.send(P.SubmitSmResp(sequence_number=bind.sequence_number, message_id=""))
        results.append((smsc.state, smsc.data_to_send()))
    assert results[0] == results[1]

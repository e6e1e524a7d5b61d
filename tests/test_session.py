"""The sans-IO session: bytes and events only, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp import pdu as P
from gateway.smpp import session as S
from gateway.smpp.constants import CommandStatus
from gateway.smpp.errors import PduError, ProtocolError


def pair(window: int = 10) -> tuple[S.Session, S.Session]:
    return S.Session(S.Role.ESME, window=window), S.Session(S.Role.SMSC, window=window)


def pump(src: S.Session, dst: S.Session) -> list:
    dst.receive_data(src.data_to_send())
    return dst.next_events()


def bound_pair(mode=P.BindTransceiver, window: int = 10) -> tuple[S.Session, S.Session]:
    esme, smsc = pair(window)
    esme.send(mode(system_id="gw", password="pw", interface_version=0x34))
    (ev,) = pump(esme, smsc)
    assert isinstance(ev, S.RequestReceived) and smsc.state is S.State.BINDING
    smsc.send(P.make_response(ev.pdu, system_id="smsc"))
    (resp,) = pump(smsc, esme)
    assert isinstance(resp, S.ResponseReceived)
    return esme, smsc


def sm(**kw) -> P.Pdu:
    return P.SubmitSm(destination_addr="4915112345", short_message=b"hello", **kw)


@pytest.mark.parametrize(
    "mode,state",
    [
        (P.BindTransceiver, S.State.BOUND_TRX),
        (P.BindTransmitter, S.State.BOUND_TX),
        (P.BindReceiver, S.State.BOUND_RX),
    ],
)
def test_bind_moves_both_sides_to_the_bound_state(mode, state):
    esme, smsc = bound_pair(mode)
    assert esme.state is state and smsc.state is state


def test_refused_bind_returns_to_open():
    esme, smsc = pair()
    esme.send(P.BindTransmitter(system_id="gw", password="bad"))
    (ev,) = pump(esme, smsc)
    smsc.send(P.error_response(ev.pdu.command_id, ev.pdu.sequence_number, CommandStatus.ESME_RINVPASWD))
    (resp,) = pump(smsc, esme)
    assert resp.pdu.command_status == CommandStatus.ESME_RINVPASWD
    assert esme.state is S.State.OPEN and smsc.state is S.State.OPEN


def test_sending_a_submit_before_bind_is_refused_and_queues_nothing():
    esme, _ = pair()
    with pytest.raises(ProtocolError):
        esme.send(sm())
    assert esme.data_to_send() == b""
    assert esme.outstanding == 0


def test_peer_submit_in_wrong_state_is_answered_invbndsts():
    esme, smsc = pair()
    raw = sm(sequence_number=7).encode()
    smsc.receive_data(raw)
    (ev,) = smsc.next_events()
    assert isinstance(ev, S.InvalidPdu)
    answer = P.decode(smsc.data_to_send())
    assert answer.command_id == P.SubmitSmResp.command_id
    assert answer.sequence_number == 7
    assert answer.command_status == CommandStatus.ESME_RINVBNDSTS


def test_receiver_bind_may_not_submit_and_transmitter_gets_no_deliver():
    esme, smsc = bound_pair(P.BindReceiver)
    with pytest.raises(ProtocolError):
        esme.send(sm())
    esme, smsc = bound_pair(P.BindTransmitter)
    with pytest.raises(ProtocolError):
        smsc.send(P.DeliverSm(short_message=b"x"))


def test_second_bind_while_bound_is_ralybnd():
    esme, smsc = bound_pair()
    smsc.receive_data(P.BindTransmitter(sequence_number=9, system_id="a").encode())
    (ev,) = smsc.next_events()
    answer = P.decode(smsc.data_to_send())
    assert answer.command_status == CommandStatus.ESME_RALYBND


def test_responses_match_by_sequence_in_any_order():
    esme, smsc = bound_pair()
    sent = [esme.send(sm()) for _ in range(5)]
    events = pump(esme, smsc)
    for ev in reversed(events):
        smsc.send(P.make_response(ev.pdu, message_id=f"id{ev.pdu.sequence_number}"))
    got = pump(smsc, esme)
    assert [g.request for g in reversed(got)] == sent
    assert all(g.pdu.message_id == f"id{g.request.sequence_number}" for g in got)
    assert esme.outstanding == 0 and esme.window_used == 0


def test_window_caps_outstanding_message_requests():
    esme, smsc = bound_pair(window=3)
    for _ in range(3):
        esme.send(sm())
    with pytest.raises(ProtocolError):
        esme.send(sm())
    esme.send(P.EnquireLink())  # link management is not windowed
    assert esme.window_free == 0 and esme.outstanding == 4


def test_sequence_numbers_wrap_and_skip_outstanding():
    esme, smsc = bound_pair()
    esme._seq = P.MAX_SEQUENCE - 1
    a = esme.send(sm())
    b = esme.send(sm())
    c = esme.send(sm())
    assert (a.sequence_number, b.sequence_number) == (P.MAX_SEQUENCE, 1)
    assert c.sequence_number == 2  # the bind's 1 was answered long ago; 0 is never used


def test_sequence_number_in_use_is_skipped():
    esme, _ = bound_pair()
    esme._seq = P.MAX_SEQUENCE
    first = esme.send(sm())  # 1
    esme._seq = P.MAX_SEQUENCE
    second = esme.send(sm())  # 1 is outstanding, so 2
    assert (first.sequence_number, second.sequence_number) == (1, 2)


def test_generic_nack_completes_the_request():
    esme, smsc = bound_pair()
    req = esme.send(sm())
    pump(esme, smsc)
    smsc.send(P.GenericNack(sequence_number=req.sequence_number, command_status=CommandStatus.ESME_RTHROTTLED))
    (ev,) = pump(smsc, esme)
    assert isinstance(ev, S.ResponseReceived) and ev.request is req
    assert esme.outstanding == 0


def test_unexpected_response_is_reported_not_fatal():
    esme, smsc = bound_pair()
    esme.receive_data(P.SubmitSmResp(sequence_number=999, message_id="x").encode())
    (ev,) = esme.next_events()
    assert isinstance(ev, S.UnexpectedResponse)
    assert esme.bound


def test_response_of_the_wrong_type_does_not_complete_a_request():
    esme, smsc = bound_pair()
    req = esme.send(sm())
    esme.receive_data(P.QuerySmResp(sequence_number=req.sequence_number, message_id="x").encode())
    (ev,) = esme.next_events()
    assert isinstance(ev, S.UnexpectedResponse)
    assert esme.is_outstanding(req.sequence_number)


def test_deadlines_expire_and_release_the_window():
    esme, _ = bound_pair(window=2)
    a = esme.send(sm(), now=0.0, timeout=5)
    b = esme.send(sm(), now=1.0, timeout=5)
    assert esme.next_deadline() == 5.0
    assert esme.expire(4.9) == []
    (late,) = esme.expire(5.0)
    assert late.request is a
    assert esme.window_free == 1 and esme.is_outstanding(b.sequence_number)


def test_enquire_link_and_unbind_are_answered_automatically():
    esme, smsc = bound_pair()
    smsc.send(P.EnquireLink())
    (ev,) = pump(smsc, esme)
    assert isinstance(ev, S.LinkChecked)
    (resp,) = pump(esme, smsc)
    assert isinstance(resp, S.ResponseReceived) and resp.pdu.command_id == P.EnquireLinkResp.command_id
    smsc.send(P.Unbind())
    (ev,) = pump(smsc, esme)
    assert isinstance(ev, S.Unbound) and ev.by_peer and esme.state is S.State.CLOSED
    events = pump(esme, smsc)
    assert isinstance(events[-1], S.Unbound) and not events[-1].by_peer
    assert smsc.state is S.State.CLOSED


def test_malformed_request_gets_its_error_response():
    esme, smsc = bound_pair()
    good = sm(sequence_number=42).encode()
    # Make source_addr longer than 20 octets: ESME_RINVSRCADR in a submit_sm_resp.
    bad = P.SubmitSm(sequence_number=42, source_addr="1" * 20, destination_addr="2").encode()
    bad = bad.replace(b"1" * 20 + b"\0", b"1" * 21, 1)
    bad = bad[:0] + len(bad).to_bytes(4, "big") + bad[4:]
    smsc.receive_data(bad)
    (ev,) = smsc.next_events()
    assert isinstance(ev, S.InvalidPdu) and not ev.fatal
    answer = P.decode(smsc.data_to_send())
    assert (answer.command_id, answer.sequence_number) == (P.SubmitSmResp.command_id, 42)
    assert answer.command_status != 0
    smsc.receive_data(good)  # the stream continues
    assert isinstance(smsc.next_events()[0], S.RequestReceived)


def test_unknown_command_gets_generic_nack():
    _, smsc = bound_pair()
    smsc.receive_data(bytes.fromhex("00000010000000ff0000000000000005"))
    (ev,) = smsc.next_events()
    nack = P.decode(smsc.data_to_send())
    assert nack.command_id == P.GenericNack.command_id
    assert (nack.sequence_number, nack.command_status) == (5, CommandStatus.ESME_RINVCMDID)


@pytest.mark.parametrize("length", [0, 15, 70000])
def test_broken_frame_is_fatal(length):
    _, smsc = bound_pair()
    smsc.receive_data(length.to_bytes(4, "big") + bytes.fromhex("000000040000000000000001"))
    (ev,) = smsc.next_events()
    assert isinstance(ev, S.InvalidPdu) and ev.fatal
    assert smsc.state is S.State.CLOSED
    assert P.decode(smsc.data_to_send()).command_status == CommandStatus.ESME_RINVCMDLEN


def test_unreadable_response_still_completes_its_request():
    esme, smsc = bound_pair()
    req = esme.send(P.QuerySm(message_id="9", source_addr="1"))
    esme.data_to_send()
    # query_sm_resp whose body cannot be read even leniently (cut inside its mandatory fields)
    body = b"9\0"
    raw = P.HEADER.pack(16 + len(body), 0x80000003, 0, req.sequence_number) + body
    esme.receive_data(raw)
    events = esme.next_events()
    assert isinstance(events[0], S.InvalidPdu) and events[0].tolerated
    assert isinstance(events[1], S.ResponseReceived) and events[1].request is req
    # The header's status decides the outcome, never a generic_nack with the decode error.
    assert events[1].pdu.command_id == P.QuerySmResp.command_id
    assert events[1].pdu.command_status == 0 and events[1].pdu.message_id is None
    assert esme.outstanding == 0 and not esme.data_to_send()


def test_abandon_all_reports_everything_outstanding():
    esme, _ = bound_pair()
    sent = {esme.send(sm()).sequence_number for _ in range(4)}
    lost = esme.abandon_all()
    assert {p.sequence_number for p in lost} == sent
    assert esme.state is S.State.CLOSED and esme.window_used == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_any_split_of_the_stream_gives_the_same_events(cuts):
    esme, smsc = bound_pair(window=100)
    for i in range(20):
        esme.send(sm(validity_period="" if i % 2 else "000001000000000R"))
    esme.send(P.EnquireLink())
    stream = esme.data_to_send()
    reference = S.Session(S.Role.SMSC)
    reference.state = S.State.BOUND_TRX
    reference.receive_data(stream)
    expected = [type(e).__name__ + repr(getattr(e, "pdu", None)) for e in reference.next_events()]
    chunked = S.Session(S.Role.SMSC)
    chunked.state = S.State.BOUND_TRX
    pos, got = 0, []
    for c in cuts * 200:
        if pos >= len(stream):
            break
        chunked.receive_data(stream[pos : pos + c])
        pos += c
        got += [type(e).__name__ + repr(getattr(e, "pdu", None)) for e in chunked.next_events()]
    chunked.receive_data(stream[pos:])
    got += [type(e).__name__ + repr(getattr(e, "pdu", None)) for e in chunked.next_events()]
    assert got == expected
    assert reference.data_to_send() == chunked.data_to_send()


# ---- responses through on_response; decoding in place -------------------------------------


def test_on_response_completes_requests_without_events():
    esme, smsc = bound_pair(window=4)
    got = []
    esme.on_response = lambda resp, req: got.append((resp, req))
    a, b, link = esme.send(sm()), esme.send(sm()), esme.send(P.EnquireLink())
    pump(esme, smsc)
    assert esme.outstanding == 3
    smsc.send(P.SubmitSmResp(sequence_number=b.sequence_number, message_id="b"))
    smsc.send(P.GenericNack(sequence_number=a.sequence_number, command_status=CommandStatus.ESME_RTHROTTLED))
    assert pump(smsc, esme) == []  # the enquire_link_resp went out first, automatically
    assert [(r.command_id, q) for r, q in got] == [
        (P.EnquireLinkResp.command_id, link),
        (P.SubmitSmResp.command_id, b),
        (P.GenericNack.command_id, a),
    ]
    assert got[1][0].message_id == "b"
    assert esme.outstanding == 0 and esme.window_used == 0


def test_on_response_leaves_bind_unbind_and_strays_to_events():
    got = []
    esme = S.Session(S.Role.ESME, on_response=lambda resp, req: got.append(resp))
    smsc = S.Session(S.Role.SMSC)
    esme.send(P.BindTransceiver(system_id="gw", password="pw"))
    (ev,) = pump(esme, smsc)
    smsc.send(P.make_response(ev.pdu, system_id="smsc"))
    (ev,) = pump(smsc, esme)
    assert isinstance(ev, S.ResponseReceived) and esme.state is S.State.BOUND_TRX
    req = esme.send(sm())
    esme.receive_data(P.QuerySmResp(sequence_number=req.sequence_number, message_id="x").encode())
    (ev,) = esme.next_events()
    assert isinstance(ev, S.UnexpectedResponse) and esme.is_outstanding(req.sequence_number)
    esme.send(P.Unbind())
    pump(esme, smsc)
    events = pump(smsc, esme)
    assert [type(e) for e in events] == [S.ResponseReceived, S.Unbound]
    assert got == [] and esme.state is S.State.CLOSED


def test_on_response_gets_a_response_the_strict_codec_refuses():
    """The SMSC's header status decides (was: a generic_nack carrying the decode error,
    which made an accepted submit look retryable)."""
    esme, _ = bound_pair()
    got = []
    esme.on_response = lambda resp, req: got.append((resp, req))
    req = esme.send(sm())
    raw = bytes.fromhex("0000001180000004000000000000") + req.sequence_number.to_bytes(2, "big") + b"9"
    esme.receive_data(raw)
    (ev,) = esme.next_events()
    assert isinstance(ev, S.InvalidPdu) and ev.tolerated
    ((resp, request),) = got
    assert request is req and resp.command_id == P.SubmitSmResp.command_id
    assert resp.command_status == 0 and resp.message_id == "9" and esme.window_used == 0


def test_a_failing_response_handler_loses_no_frames():
    esme, smsc = bound_pair()
    seen = []

    def handler(resp, req):
        seen.append(resp.message_id)
        if len(seen) == 1:
            raise RuntimeError("application bug")

    esme.on_response = handler
    reqs = [esme.send(sm()) for _ in range(3)]
    pump(esme, smsc)
    for i, r in enumerate(reqs):
        smsc.send(P.SubmitSmResp(sequence_number=r.sequence_number, message_id=str(i)))
    with pytest.raises(RuntimeError):
        esme.receive_data(smsc.data_to_send())
    esme.receive_data(b"")  # what followed the failing frame is still buffered
    assert seen == ["0", "1", "2"] and esme.outstanding == 0


def _frames() -> list[bytes]:
    receipt = P.DeliverSm(
        sequence_number=3,
        source_addr="4915112345678",
        destination_addr="Acme",
        esm_class=4,
        short_message=b"id:1 sub:001 dlvrd:001 stat:DELIVRD err:000 text:",
        tlvs=[P.Tlv(0x001E, "1f"), P.Tlv(0x0427, 2)],
    )
    multi = P.SubmitMulti(
        sequence_number=4,
        dest_addresses=[P.DestAddress(1, 1, 1, "4915"), P.DestAddress(2, dl_name="list")],
        short_message=b"x",
    )
    return [
        sm(sequence_number=2, validity_period="000001000000000R").encode(),
        receipt.encode(),
        multi.encode(),
        P.SubmitMultiResp(
            sequence_number=5, message_id="m", unsuccess_smes=[P.UnsuccessSme(1, 1, "49", 8)]
        ).encode(),
        P.QuerySmResp(sequence_number=6, message_id="q", final_date="", message_state=2).encode(),
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(range(5)),
    st.integers(min_value=0, max_value=400),
    st.integers(min_value=0, max_value=255),
    st.booleans(),
    st.sampled_from([b"", b"\0" * 40, b"\xff" * 40]),
)
def test_decoding_in_place_reads_nothing_past_the_frame(which, cut, byte, truncate, after):
    """A frame decoded inside a larger read buffer gives exactly what decoding it alone
    gives (the PDU, or the same error and answer), whatever bytes follow it."""
    frame = bytearray(_frames()[which])
    if truncate:
        frame = frame[: max(16, len(frame) - 1 - cut % (len(frame) - 15))]
    else:
        frame[16 + cut % (len(frame) - 16)] = byte
    frame[:4] = len(frame).to_bytes(4, "big")
    frame = bytes(frame)
    follower = sm(sequence_number=99).encode()
    try:
        expected: object = P.decode(frame)
    except PduError as e:
        expected = (e.command_status, str(e))
    role = S.Role.ESME if which == 1 else S.Role.SMSC  # a side that may receive the frame

    def session() -> S.Session:
        s = S.Session(role, window=100)
        s.state = S.State.BOUND_TRX
        return s

    s = session()
    s.receive_data(frame + after + follower if not after else frame + follower + after)
    first = s.next_events()[0]
    if isinstance(expected, tuple):
        assert isinstance(first, S.InvalidPdu)
        # what a receiver reads leniently is reported with the strict error, reworded
        got = str(first.error).replace("; tolerated: decoded leniently", "")
        assert (first.error.command_status, got) == expected
    else:
        assert isinstance(first, (S.RequestReceived, S.UnexpectedResponse))
        assert first.pdu == expected
    alone = session()
    alone.receive_data(frame)
    first_alone = alone.next_events()[0]
    assert type(first_alone) is type(first)
    answer = alone.data_to_send()
    assert s.data_to_send()[: len(answer)] == answer

"""Session behaviours found while building the simulator: crossing unbinds, receipts in
flight during an unbind, and timed-out bind/unbind requests."""

from __future__ import annotations


from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus
from gateway.smpp.session import RequestReceived, Role, Session, State, Unbound


def _bound(role: Role) -> Session:
    s = Session(role)
    if role is Role.SMSC:
        s.receive_data(P.BindTransceiver(system_id="a", password="b", sequence_number=1).encode())
        (ev,) = s.next_events()
        s.send(P.make_response(ev.pdu, system_id="x"))
    else:
        s.send(P.BindTransceiver(system_id="a", password="b"))
        s.receive_data(P.BindTransceiverResp(sequence_number=1, system_id="x").encode())
        s.next_events()
    s.data_to_send()
    assert s.state is State.BOUND_TRX
    return s


def test_crossing_unbind_is_answered_ok():
    s = _bound(Role.SMSC)
    s.send(P.Unbind(), 0.0)
    s.data_to_send()
    s.receive_data(P.Unbind(sequence_number=9).encode())  # the ESME unbinds at the same moment
    events = s.next_events()
    resp = P.decode(s.data_to_send())
    assert resp.command_status == CommandStatus.ESME_ROK
    assert any(isinstance(e, Unbound) for e in events)


def test_deliver_sm_in_flight_during_unbind_reaches_the_application():
    s = _bound(Role.ESME)
    s.send(P.Unbind(), 0.0)
    s.data_to_send()
    s.receive_data(
        P.DeliverSm(sequence_number=5, esm_class=4, short_message=b"id:1 stat:DELIVRD").encode()
    )
    events = s.next_events()
    assert any(isinstance(e, RequestReceived) for e in events)  # today: InvalidPdu + RINVBNDSTS


def test_bind_timeout_returns_to_open():
    s = Session(Role.ESME, response_timeout=1.0)
    s.send(P.BindTransceiver(system_id="a", password="b"), 0.0)
    assert len(s.expire(5.0)) == 1
    assert s.state is State.OPEN and s.can_send(P.BindTransceiver.command_id)


def test_unbind_timeout_closes():
    s = _bound(Role.ESME)
    s.send(P.Unbind(), 0.0, timeout=1.0)
    assert s.state is State.UNBINDING
    assert len(s.expire(2.0)) == 1
    assert s.state is State.CLOSED


def test_no_new_requests_while_unbinding():
    s = _bound(Role.ESME)
    s.send(P.Unbind(), 0.0)
    assert not s.can_send(P.SubmitSm.command_id)

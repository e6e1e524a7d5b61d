"""Session.send_acks: ESME_ROK deliver_sm_resp / data_sm_resp for many requests, one buffer."""

from __future__ import annotations

import pytest

from gateway.smpp import pdu as P
from gateway.smpp import session as S
from gateway.smpp.constants import CommandId
from gateway.smpp.errors import ProtocolError
from tests.test_session import bound_pair, pump


def test_acks_are_the_codecs_responses_and_complete_the_peers_requests():
    esme, smsc = bound_pair()
    for i in range(3):
        smsc.send(P.DeliverSm(source_addr="49151", destination_addr="Acme", short_message=b"r%d" % i))
    smsc.send(P.DataSm(source_addr="49151", destination_addr="Acme"))
    events = pump(smsc, esme)
    seqs = [e.pdu.sequence_number for e in events]
    esme.send_acks(CommandId.DELIVER_SM_RESP, seqs[:3])
    esme.send_acks(CommandId.DATA_SM_RESP, seqs[3:])
    data = esme.data_to_send()
    expected = b"".join(
        P.make_response(e.pdu, 0, message_id="").encode() for e in events
    )
    assert data == expected
    assert smsc.window_used == 4
    smsc.receive_data(data)
    answers = smsc.next_events()
    assert [(type(a), a.pdu.command_status) for a in answers] == [(S.ResponseReceived, 0)] * 4
    assert smsc.window_used == 0 and smsc.outstanding == 0


def test_acks_refuse_other_commands_and_a_closed_session():
    esme, _ = bound_pair()
    with pytest.raises(ValueError):
        esme.send_acks(CommandId.SUBMIT_SM_RESP, [1])
    esme.abandon_all()  # closed
    with pytest.raises(ProtocolError):
        esme.send_acks(CommandId.DELIVER_SM_RESP, [1])
    assert not esme.has_output

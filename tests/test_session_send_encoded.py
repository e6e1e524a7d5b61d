"""Session.send of a P.Encoded (its encode() inlined there): the same bytes, sequence
numbers, window and outstanding requests as sending the typed PDU those bytes encode."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp import pdu as P
from tests.test_session import bound_pair


def _submit(i: int, text: bytes) -> P.Pdu:
    return P.SubmitSm(source_addr="Gateway", destination_addr=f"49151{i:08d}", short_message=text)


@settings(max_examples=100, deadline=None)
@given(
    texts=st.lists(st.binary(max_size=140), min_size=1, max_size=12),
    status=st.sampled_from([0, 0, 1, 0x58]),
    start=st.sampled_from([0, 5, P.MAX_SEQUENCE - 3]),
)
def test_an_encoded_request_is_sent_as_its_pdu(texts: list[bytes], status: int, start: int) -> None:
    typed, _ = bound_pair(window=12)
    encoded, _ = bound_pair(window=12)
    typed._seq = encoded._seq = start  # across the wrap too
    for i, text in enumerate(texts):
        pdu = _submit(i, text)
        pdu.command_status = status
        body = pdu.encode()[16:]
        a = typed.send(pdu, 1.0, 5.0)
        b = encoded.send(P.Encoded(pdu.command_id, body, 0, status), 1.0, 5.0)
        assert a.sequence_number == b.sequence_number
    assert encoded.data_to_send() == typed.data_to_send()
    assert encoded.window_used == typed.window_used == len(texts)
    assert encoded.next_deadline() == typed.next_deadline() == 6.0
    assert all(encoded.is_outstanding(s) for s in typed._outstanding)


def test_an_encoded_response_goes_the_response_way() -> None:
    esme, smsc = bound_pair()
    esme.send(_submit(1, b"x"))
    smsc.receive_data(esme.data_to_send())
    (ev,) = smsc.next_events()
    body = P.make_response(ev.pdu, message_id="1f").encode()[16:]
    smsc.send(P.Encoded(ev.pdu.command_id | 0x80000000, body, ev.pdu.sequence_number))
    assert smsc.data_to_send() == P.make_response(ev.pdu, message_id="1f").encode()

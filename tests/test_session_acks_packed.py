"""Session.send_acks laying the sequence numbers into copies of one answer: the codec's
encoding of each answer, in order, for any count and any number a header can carry."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId
from tests.test_session import bound_pair

RESPONSE = {int(CommandId.DELIVER_SM_RESP): P.DeliverSmResp, int(CommandId.DATA_SM_RESP): P.DataSmResp}


@settings(max_examples=300, deadline=None)
@given(
    command_id=st.sampled_from(sorted(RESPONSE)),
    seqs=st.lists(
        st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 1, 0xFF, 0x100, 0x7FFFFFFF, 0xFFFFFFFF])),
        max_size=300,
    ),
)
def test_acks_are_the_codecs_answers_in_order(command_id: int, seqs: list[int]) -> None:
    esme, _ = bound_pair()
    esme.send_acks(command_id, seqs)
    expected = b"".join(
        RESPONSE[command_id](sequence_number=seq, message_id="").encode() for seq in seqs
    )
    assert esme.data_to_send() == expected


@pytest.mark.parametrize("bad", [-1, 0x100000000, 1.0, "1", None])
def test_a_number_a_header_cannot_carry_queues_nothing(bad: object) -> None:
    esme, _ = bound_pair()
    with pytest.raises(struct.error):
        esme.send_acks(CommandId.DELIVER_SM_RESP, [1, bad, 2])  # type: ignore[list-item]
    assert not esme.has_output


def test_no_numbers_queue_an_empty_write_as_before() -> None:
    esme, _ = bound_pair()
    esme.send_acks(CommandId.DELIVER_SM_RESP, [])
    assert esme.data_to_send() == b""

"""EsmeClient's answers to a deliver batch: a batch of receipts read per read, all taken,
answered in one send_acks (esme._taken_receipts) with the bytes the general loop
(esme._queue_answers) queues for it; any other batch takes the loop."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp import esme as E
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.errors import PduError
from tests.test_session import bound_pair

_ITEMS = st.one_of(
    st.builds(lambda seq: (seq, 4, b"id:1 stat:DELIVRD", "1", 2), st.integers(1, 0x7FFFFFFF)),
    st.builds(lambda seq: P.DeliverSm(sequence_number=seq, short_message=b"mo"), st.integers(1, 0x7FFFFFFF)),
    st.builds(lambda seq: P.DataSm(sequence_number=seq), st.integers(1, 0x7FFFFFFF)),
    st.just(P.AlertNotification(sequence_number=3)),
)
_STATUS = st.sampled_from([0, CommandStatus.ESME_ROK, 0.0, False, CommandStatus.ESME_RX_T_APPN, 0x45, None])


def _queued(answer) -> bytes:
    esme, _ = bound_pair()
    answer(esme)
    return esme.data_to_send()


@settings(max_examples=300, deadline=None)
@given(
    items=st.one_of(
        st.lists(_ITEMS, max_size=20),
        st.lists(_ITEMS.filter(lambda i: type(i) is tuple), min_size=1, max_size=20),
    ),
    data=st.data(),
)
def test_the_usual_batch_is_answered_as_the_loop_answers_it(items: list, data: st.DataObject) -> None:
    statuses = data.draw(
        st.one_of(st.just([0] * len(items)), st.lists(_STATUS, min_size=len(items), max_size=len(items)))
    )
    seqs = E._taken_receipts(items, statuses)
    usual = bool(items) and all(type(i) is tuple for i in items) and all(s == 0 for s in statuses)
    assert (seqs is not None) == usual
    try:
        loop = _queued(lambda s: E._queue_answers(s, items, statuses))
    except PduError:  # a status the loop cannot encode (None)
        assert not usual
        return
    if usual:
        assert seqs == [i[0] for i in items]
        assert _queued(lambda s: s.send_acks(CommandId.DELIVER_SM_RESP, seqs)) == loop


def test_a_tuple_of_statuses_takes_the_loop() -> None:
    items = [(5, 4, b"", "1", 2)]
    assert E._taken_receipts(items, (0,)) is None  # type: ignore[arg-type]
    assert E._taken_receipts(items, [0]) == [5]
    assert E._taken_receipts([], []) is None

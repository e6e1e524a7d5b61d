"""Intermediate delivery notifications (esm_class 0x20) and alert_notification reach the
channel like receipts do, but neither is an outcome."""

from __future__ import annotations

import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag
from gateway.states import State
from gateway.store.records import SegmentState
from tests.test_receipts_concurrent import submitted_two_segment_message


def notification(smsc_id: str, stat: str, state: int, esm_class: int) -> P.DeliverSm:
    text = f"id:{smsc_id} sub:001 dlvrd:000 submit date:2611260101 done date:2611260101 stat:{stat} err:001 text:"
    return P.DeliverSm(
        esm_class=esm_class, short_message=text.encode(),
        tlvs=[P.Tlv(Tag.RECEIPTED_MESSAGE_ID, smsc_id), P.Tlv(Tag.MESSAGE_STATE, state)],
    )


async def test_an_intermediate_notification_is_stored_but_not_applied(nursery):
    ch, store, job = await submitted_two_segment_message()
    job.segments = job.segments[:1]
    job.record.segment_count = 1
    # "UNDELIV" in an intermediate notification: the SMSC is still retrying
    nursery.start_soon(ch._on_deliver, [notification("1", "UNDELIV", 5, 0x20)])
    with trio.fail_after(2):
        while not store.calls:
            await trio.sleep(0.001)
    assert store.calls[0][1] == []  # no move
    store.calls[0][0].set()
    await trio.sleep(0.01)
    assert job.segments[0].state == SegmentState.SUBMITTED and job.record.state is State.SUBMITTED
    assert ch.stats.receipts_matched == 1
    # the final receipt decides
    nursery.start_soon(ch._on_deliver, [notification("1", "DELIVRD", 2, 0x04)])
    with trio.fail_after(2):
        while len(store.calls) < 2:
            await trio.sleep(0.001)
    assert store.calls[1][1][0].state is State.DELIVERED
    store.calls[1][0].set()
    await trio.sleep(0.01)
    assert job.record.state is State.DELIVERED


async def test_an_alert_notification_is_not_counted_as_mo():
    ch, _store, _job = await submitted_two_segment_message()
    alert = P.AlertNotification(source_addr="4915100000001", esme_addr="Acme")
    assert await ch._on_deliver([alert]) == [0]
    assert (ch.stats.alerts, ch.stats.mo, ch.stats.receipts) == (1, 0, 0)

"""Deliver batches of several binds are stored at the same time (Channel._store_receipts):
the batch that completes a message must carry its final move, whatever the order."""

from __future__ import annotations

import pytest
import trio

from gateway.channels import Channel, Job
from gateway.config import ChannelConfig
from gateway.errors import Unavailable
from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag
from gateway.states import State
from gateway.store.records import MessageRecord, SegmentRecord, SegmentState


class Store:
    """Holds every record_receipts call until released; remembers what was committed."""

    def __init__(self) -> None:
        self.calls: list[tuple[trio.Event, list]] = []
        self.committed_moves: list[tuple[str, State]] = []
        self.nowait_moves: list[tuple[str, State]] = []
        self.committed_errors: list[str | None] = []
        self.fail_next = False

    async def record_receipts(self, records, *, segments=(), moves=()):
        release = trio.Event()
        fail, self.fail_next = self.fail_next, False
        self.calls.append((release, list(moves)))
        await release.wait()
        if fail:
            raise Unavailable("store write failed")
        self.committed_moves += [(m.message_id, m.state) for m in moves]
        self.committed_errors += [m.error_code for m in moves]

    def set_state_nowait(self, message_id, state, **_kw):
        self.nowait_moves.append((message_id, state))

    def update_segment_nowait(self, seg):
        pass


def receipt(smsc_id: str, stat: str = "DELIVRD", err: str = "000") -> P.DeliverSm:
    text = f"id:{smsc_id} sub:001 dlvrd:001 submit date:2611260101 done date:2611260101 stat:{stat} err:{err} text:"
    state = {"DELIVRD": 2, "UNDELIV": 5}[stat]
    return P.DeliverSm(
        esm_class=0x04, short_message=text.encode(),
        tlvs=[P.Tlv(Tag.RECEIPTED_MESSAGE_ID, smsc_id), P.Tlv(Tag.MESSAGE_STATE, state)],
    )


async def submitted_two_segment_message() -> tuple[Channel, Store, Job]:
    store = Store()
    ch = Channel(ChannelConfig(name="c", system_id="s", password="p", receipt_id_format="hex"), store)
    rec = MessageRecord(
        id="m1", tenant="t", source_addr="Acme", destination="4915100000001", text="x" * 200,
        category="otp", priority=0, state=State.SUBMITTED, channel="c", data_coding=0,
        segment_count=2, created_at=0.0, updated_at=0.0, expires_at=1e12,
    )
    segs = [
        SegmentRecord(message_id="m1", seq=n, state=SegmentState.SUBMITTED, channel="c",
                      smsc_message_id=f"{n:x}", id_key=str(n))
        for n in (1, 2)
    ]
    job = Job(rec, segs)
    ch.adopt_submitted(job)
    return ch, store, job


@pytest.mark.parametrize("commit_order", [(0, 1), (1, 0)])
async def test_two_batches_in_flight_one_carries_the_final_move(nursery, commit_order):
    ch, store, job = await submitted_two_segment_message()
    done = []

    async def deliver(pdu):
        done.append(await ch._on_deliver([pdu]))

    nursery.start_soon(deliver, receipt("1"))
    nursery.start_soon(deliver, receipt("2"))
    with trio.fail_after(5):
        while len(store.calls) < 2:
            await trio.sleep(0)
        assert [len(moves) for _, moves in store.calls] == [0, 1]  # the second sees the first
        for i in commit_order:
            store.calls[i][0].set()
            await trio.sleep(0.01)
        while len(done) < 2:
            await trio.sleep(0)
    assert store.committed_moves == [("m1", State.DELIVERED)]
    assert store.nowait_moves == []
    assert job.record.state is State.DELIVERED
    assert job.receipts_in_flight is None


@pytest.mark.parametrize("commit_order", [(0, 1), (1, 0)])
async def test_the_move_to_a_failure_carries_its_error_whatever_the_order(nursery, commit_order):
    """The batch carrying the move commits first or last: memory follows the committed
    move, with the failed segment's receipt error, as soon as it is committed."""
    ch, store, job = await submitted_two_segment_message()
    done = []

    async def deliver(pdu):
        done.append(await ch._on_deliver([pdu]))

    with trio.fail_after(5):
        nursery.start_soon(deliver, receipt("1"))
        while len(store.calls) < 1:
            await trio.sleep(0)
        nursery.start_soon(deliver, receipt("2", "UNDELIV", "027"))
        while len(store.calls) < 2:
            await trio.sleep(0)
        assert [len(moves) for _, moves in store.calls] == [0, 1]
        for n, i in enumerate(commit_order):
            store.calls[i][0].set()
            await trio.sleep(0.01)
            if n == 0:  # memory moves with the commit of the move, not before
                moved = i == 1
                assert job.record.state is (State.UNDELIVERABLE if moved else State.SUBMITTED)
        while len(done) < 2:
            await trio.sleep(0)
    assert store.committed_moves == [("m1", State.UNDELIVERABLE)]
    assert store.committed_errors == ["027"]
    assert store.nowait_moves == []
    assert job.record.state is State.UNDELIVERABLE and job.record.error_code == "027"
    assert job.receipts_in_flight is None


async def test_a_failed_batch_gives_its_final_move_back(nursery):
    ch, store, job = await submitted_two_segment_message()
    outcomes = []

    async def deliver(pdu):
        try:
            outcomes.append(await ch._on_deliver([pdu]))
        except Unavailable:
            outcomes.append("failed")

    nursery.start_soon(deliver, receipt("1"))
    with trio.fail_after(5):
        while len(store.calls) < 1:
            await trio.sleep(0)
        store.fail_next = True
        nursery.start_soon(deliver, receipt("2"))  # this one carries the move, and fails
        while len(store.calls) < 2:
            await trio.sleep(0)
        store.calls[1][0].set()
        store.calls[0][0].set()
        while len(outcomes) < 2:
            await trio.sleep(0)
        assert job.record.state is State.SUBMITTED and job.final_move is None
        nursery.start_soon(deliver, receipt("2"))  # the SMSC sends it again
        while len(store.calls) < 3:
            await trio.sleep(0)
        assert store.calls[2][1][0].message_id == "m1"
        store.calls[2][0].set()
        while len(outcomes) < 3:
            await trio.sleep(0)
    assert store.committed_moves == [("m1", State.DELIVERED)]
    assert job.record.state is State.DELIVERED


async def test_a_one_segment_receipt_in_flight_makes_a_second_one_a_duplicate(nursery):
    store = Store()
    ch = Channel(ChannelConfig(name="c", system_id="s", password="p", receipt_id_format="hex"), store)
    rec = MessageRecord(
        id="m1", tenant="t", source_addr="Acme", destination="4915100000001", text="hi",
        category="otp", priority=0, state=State.SUBMITTED, channel="c", data_coding=0,
        segment_count=1, created_at=0.0, updated_at=0.0, expires_at=1e12,
    )
    job = Job(rec, [SegmentRecord(message_id="m1", seq=1, state=SegmentState.SUBMITTED,
                                  channel="c", smsc_message_id="1", id_key="1")])
    ch.adopt_submitted(job)
    done = []

    async def deliver():
        done.append(await ch._on_deliver([receipt("1")]))

    nursery.start_soon(deliver)
    with trio.fail_after(5):
        while not store.calls:
            await trio.sleep(0)
        await deliver()  # the SMSC sent it again while the first is being stored
        assert len(store.calls) == 1 and ch.stats.receipts_duplicate == 1
        store.calls[0][0].set()
        while len(done) < 2:
            await trio.sleep(0)
    assert store.committed_moves == [("m1", State.DELIVERED)]
    assert job.record.state is State.DELIVERED


async def test_a_batch_cancelled_while_its_commit_is_in_flight_still_applies_it(nursery):
    """The bind closes (its tasks are cancelled) while a receipt batch waits for its commit:
    the store's op commits anyway, so the batch still applies it in memory and keeps its
    final move. The SMSC's second copy of the unanswered receipt is then a duplicate, not a
    second final move (before: the move was given back, and the copy stored another)."""
    ch, store, job = await submitted_two_segment_message()
    job.segments = job.segments[:1]
    job.record.segment_count = 1
    outcome = []

    async def deliver(scope_box):
        with trio.CancelScope() as scope:
            scope_box.append(scope)
            await ch._on_deliver([receipt("1")])
            await trio.sleep_forever()  # the ESME's answer would be sent here
        outcome.append(scope.cancelled_caught)

    box: list[trio.CancelScope] = []
    nursery.start_soon(deliver, box)
    await wait_until_called(store, 1)
    box[0].cancel()  # the bind goes away while the commit is in flight
    await trio.sleep(0.01)
    store.calls[0][0].set()  # the commit completes
    with trio.fail_after(2):
        while not outcome:
            await trio.sleep(0.001)
    assert outcome == [True]
    assert store.committed_moves == [("m1", State.DELIVERED)]
    assert job.record.state is State.DELIVERED and job.final_move is State.DELIVERED
    # the SMSC sends the receipt again (it was never answered): no second final move
    store.find_segment = _nothing
    nursery.start_soon(ch._on_deliver, [receipt("1")])
    await wait_until_called(store, 2)
    assert store.calls[1][1] == []
    store.calls[1][0].set()


async def _nothing(*_args):
    return None


async def wait_until_called(store: Store, n: int) -> None:
    with trio.fail_after(2):
        while len(store.calls) < n:
            await trio.sleep(0.001)

"""A message that receipts move to a failure carries the receipt error of the segment that
decided it, in the store and in memory alike; a delivered one carries none."""

from __future__ import annotations

import pytest

from gateway.channels import Channel, Job
from gateway.config import ChannelConfig, StoreConfig
from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag
from gateway.states import State
from gateway.store.records import MessageRecord, SegmentRecord, SegmentState
from gateway.store.sqlite import SqliteStore

STATES = {"DELIVRD": 2, "UNDELIV": 5, "EXPIRED": 3}


def receipt(smsc_id: str, stat: str = "DELIVRD", err: str = "000") -> P.DeliverSm:
    text = (
        f"id:{smsc_id} sub:001 dlvrd:001 submit date:2611260101 done date:2611260101 "
        f"stat:{stat} err:{err} text:"
    )
    return P.DeliverSm(
        esm_class=0x04, short_message=text.encode(),
        tlvs=[P.Tlv(Tag.RECEIPTED_MESSAGE_ID, smsc_id), P.Tlv(Tag.MESSAGE_STATE, STATES[stat])],
    )


def submitted(mid: str, segments: int) -> tuple[MessageRecord, list[SegmentRecord]]:
    rec = MessageRecord(
        id=mid, tenant="t", source_addr="Acme", destination="4915100000001",
        text="x" * (10 if segments == 1 else 200), category="otp", priority=0,
        state=State.SUBMITTED, channel="c", data_coding=0, segment_count=segments,
        created_at=1.0, updated_at=1.0, expires_at=1e12,
    )
    segs = [
        SegmentRecord(message_id=mid, seq=n, state=SegmentState.SUBMITTED, channel="c",
                      smsc_message_id=f"{mid[1:]}{n}", id_key=str(int(f"{mid[1:]}{n}", 16)))
        for n in range(1, segments + 1)
    ]
    return rec, segs


@pytest.fixture(params=["thread", "process"])
async def channel(request, tmp_path, nursery):
    store = SqliteStore(StoreConfig(path=str(tmp_path / "gw.db"), batch_wait_ms=1.0, writer=request.param))
    await nursery.start(store.run)
    cfg = ChannelConfig(name="c", system_id="s", password="p", receipt_id_format="hex")
    return Channel(cfg, store, clock=lambda: 100.0)


async def adopt(ch: Channel, mid: str, segments: int) -> Job:
    rec, segs = submitted(mid, segments)
    await ch.store.insert_messages([(rec, segs)])
    r2, s2 = submitted(mid, segments)  # memory's own copies
    job = Job(r2, s2)
    ch.adopt_submitted(job)
    return job


async def error_codes(ch: Channel, job: Job) -> tuple[str, str | None, str | None]:
    view = await ch.store.get_message("t", job.record.id)
    assert view.message.state is job.record.state
    return view.message.state.value, view.message.error_code, job.record.error_code


async def test_one_segment_undeliverable_carries_its_error(channel):
    job = await adopt(channel, "m1", 1)
    await channel._on_deliver([receipt("11", "UNDELIV", "001")])
    assert await error_codes(channel, job) == ("undeliverable", "001", "001")
    [seg] = (await channel.store.get_message("t", "m1")).segments
    assert seg.receipt_error == "001"


async def test_one_segment_delivered_carries_none(channel):
    job = await adopt(channel, "m1", 1)
    await channel._on_deliver([receipt("11", "DELIVRD", "000")])
    assert await error_codes(channel, job) == ("delivered", None, None)


@pytest.mark.parametrize("same_batch", [False, True])
async def test_the_failed_segment_decides_the_error(channel, same_batch):
    job = await adopt(channel, "m2", 2)
    first, second = receipt("21", "DELIVRD", "000"), receipt("22", "UNDELIV", "027")
    if same_batch:
        await channel._on_deliver([first, second])
    else:
        await channel._on_deliver([first])
        assert job.record.state is State.SUBMITTED
        await channel._on_deliver([second])
    assert await error_codes(channel, job) == ("undeliverable", "027", "027")


async def test_two_segments_delivered_carry_none(channel):
    job = await adopt(channel, "m2", 2)
    await channel._on_deliver([receipt("21")])
    await channel._on_deliver([receipt("22")])
    assert await error_codes(channel, job) == ("delivered", None, None)


async def test_the_first_failed_segment_decides(channel):
    """Two failures: the message takes the first one's state, and its error."""
    job = await adopt(channel, "m2", 2)
    await channel._on_deliver([receipt("22", "EXPIRED", "027"), receipt("21", "UNDELIV", "001")])
    assert await error_codes(channel, job) == ("undeliverable", "001", "001")


class NowaitStore:
    def __init__(self) -> None:
        self.moves: list[tuple[str, State, str | None]] = []

    def set_state_nowait(self, message_id, state, *, error_code=None, **_kw) -> None:
        self.moves.append((message_id, state, error_code))


async def test_a_move_not_stored_with_receipts_carries_the_error_too():
    """Receipts applied before the job was submitted (they overtook their resps): the move
    is queued by _check_complete, with the error."""
    store = NowaitStore()
    ch = Channel(ChannelConfig(name="c", system_id="s", password="p"), store, clock=lambda: 100.0)
    rec, segs = submitted("m2", 2)
    segs[0].state, segs[0].receipt_error = SegmentState.DELIVERED, "000"
    segs[1].state, segs[1].receipt_error = SegmentState.UNDELIVERABLE, "027"
    job = Job(rec, segs)
    ch._check_complete(job)
    assert store.moves == [("m2", State.UNDELIVERABLE, "027")]
    assert job.record.error_code == "027"

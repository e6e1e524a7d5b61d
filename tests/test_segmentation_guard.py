"""A message's segments are fixed at intake; a channel whose text settings split it into
another number of PDUs rejects it (Channel._prepare) instead of sending part of it or
indexing past its PDUs."""

from __future__ import annotations

from gateway.channels import Channel, Job
from gateway.config import ChannelConfig
from gateway.smpp import pdu as P
from gateway.states import State
from gateway.store.records import MessageRecord, SegmentRecord


class Store:
    def __init__(self) -> None:
        self.moves: list[tuple[str, State, str | None, str | None]] = []

    def set_state_nowait(self, message_id, state, *, error_code=None, error=None, **_kw) -> None:
        self.moves.append((message_id, state, error_code, error))


class Client:
    def __init__(self, room: int = 64) -> None:
        self.room = room
        self.sent: list[P.Pdu | P.Encoded] = []

    def free_slots(self) -> int:
        return self.room

    async def acquire_slot(self, wait_for_bind: bool = True) -> bool:
        return True

    def submit_nowait(self, pdu, on_result, timeout=None, now=None) -> bool:
        self.room -= 1
        self.sent.append(pdu)
        return True


def job(mid: str, text: str, segments: int) -> Job:
    rec = MessageRecord(
        id=mid, tenant="t", source_addr="Acme", destination="4915100000001", text=text,
        category="otp", priority=0, state=State.QUEUED, channel="c", data_coding=0,
        segment_count=segments, created_at=0.0, updated_at=0.0, expires_at=1e12,
        concat_ref=7 if segments > 1 else None,
    )
    return Job(rec, [SegmentRecord(message_id=mid, seq=n) for n in range(1, segments + 1)])


def channel(**kw) -> tuple[Channel, Store]:
    store = Store()
    cfg = ChannelConfig(name="c", system_id="s", password="p", tps=1000, burst=1000, **kw)
    return Channel(cfg, store, clock=lambda: 1.0), store


async def test_three_segments_on_a_channel_that_makes_one_are_rejected():
    ch, store = channel(concatenation="payload")
    j = job("m1", "x" * 400, 3)  # 3 segments of 153 at intake (udh8), one payload here
    ch._mark_submitting(j, 1.0)
    client = Client()
    await ch._submit_job(client, j, 1.0)
    assert client.sent == [] and ch._inflight == 0
    assert j.record.state is State.REJECTED and j.pdus is None
    [(mid, state, code, error)] = store.moves
    assert (mid, state, code) == ("m1", State.REJECTED, "segmentation_changed")
    assert "channel c" in error and "1 segment" in error and "accepted as 3" in error
    assert j.record.error_code == "segmentation_changed" and j.record.error == error
    assert ch.stats.rejected == 1


async def test_the_burst_rejects_a_one_segment_message_split_in_two_and_goes_on():
    ch, store = channel()  # udh8: 200 characters make 2 segments here
    ch.queue.put(job("m1", "x" * 200, 1), 0)
    ch.queue.put(job("m2", "hi", 1), 0)
    client = Client()
    ch._burst(client)
    assert [P.decode(p.encode()).short_message for p in client.sent] == [b"hi"]
    assert [(m, s, c) for m, s, c, _ in store.moves] == [("m1", State.REJECTED, "segmentation_changed")]
    assert "2 segment" in store.moves[0][3] and "accepted as 1" in store.moves[0][3]
    assert ch.stats.rejected == 1 and len(ch.queue) == 0


async def test_the_same_split_is_sent():
    ch, store = channel()
    j = job("m1", "x" * 400, 3)
    ch._mark_submitting(j, 1.0)
    client = Client()
    await ch._submit_job(client, j, 1.0)
    assert len(client.sent) == 3 and store.moves == [] and ch.stats.rejected == 0

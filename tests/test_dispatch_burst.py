"""The dispatcher's burst (Channel._burst): queued one-segment jobs go out without awaits
while the bind has window room and the bucket has tokens, and nothing else does."""

from __future__ import annotations

from functools import partial

import msgspec
import trio

from gateway.channels import Channel, Job
from gateway.config import ChannelConfig
from gateway.smpp import pdu as P
from gateway.smpp.esme import EsmeClient
from gateway.states import State
from gateway.store.records import MessageRecord, SegmentRecord
from tests.scripted_smsc import ScriptedSmsc


class Store:
    def __init__(self) -> None:
        self.moves: list[tuple[str, State]] = []

    def set_state_nowait(self, message_id, state, **_kw) -> None:
        self.moves.append((message_id, state))


class Client:
    """An ESME with `room` free window slots."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.sent: list[P.Pdu | P.Encoded] = []

    def free_slots(self) -> int:
        return self.room

    def submit_nowait(self, pdu, on_result, timeout=None, now=None) -> bool:
        assert self.room > 0, "sent beyond the window"
        self.room -= 1
        self.sent.append(pdu)
        return True


def job(i: int, segments: int = 1, priority: int = 0) -> Job:
    rec = MessageRecord(
        id=f"m{i}", tenant="t", source_addr="Acme", destination=f"49151{i:08d}",
        text="x" * (200 if segments > 1 else 10), category="otp", priority=priority,
        state=State.QUEUED, channel="c", data_coding=0, segment_count=segments,
        created_at=0.0, updated_at=0.0, expires_at=1e12, concat_ref=7 if segments > 1 else None,
    )
    return Job(rec, [SegmentRecord(message_id=rec.id, seq=k + 1) for k in range(segments)])


def channel(tps: float, burst: int) -> tuple[Channel, Store]:
    store = Store()
    cfg = ChannelConfig(name="c", system_id="s", password="p", tps=tps, burst=burst)
    return Channel(cfg, store, clock=lambda: 1.0), store


async def test_the_burst_stops_at_the_window():
    ch, store = channel(tps=1000, burst=1000)
    for i in range(10):
        ch.queue.put(job(i), 0)
    client = Client(room=4)
    ch._burst(client)
    assert [P.decode(p.encode()).destination_addr for p in client.sent] == [
        f"49151{i:08d}" for i in range(4)
    ]
    assert len(ch.queue) == 6 and ch._inflight == 4
    # SUBMITTING is not stored (on_submitting_recovery = "resubmit"): it goes with the
    # outcome, submitted_nowait via SUBMITTING.
    assert store.moves == []
    assert [j.record.state for j in (ch.queue.peek(),)] == [State.QUEUED]


async def test_the_burst_stops_when_the_bucket_is_empty(autojump_clock):
    ch, _ = channel(tps=10, burst=3)
    for i in range(10):
        ch.queue.put(job(i), 0)
    client = Client(room=64)
    ch._burst(client)
    assert len(client.sent) == 3 and len(ch.queue) == 7  # the bucket held 3 tokens
    await trio.sleep(0.2)  # 2 more tokens at 10/s
    ch._burst(client)
    assert len(client.sent) == 5
    await trio.sleep(10)  # the bucket holds at most `burst`
    ch._burst(client)
    assert len(client.sent) == 8


async def test_a_multipart_job_is_left_to_the_general_path():
    ch, _ = channel(tps=1000, burst=1000)
    ch.queue.put(job(0), 0)
    ch.queue.put(job(1, segments=2), 0)
    ch.queue.put(job(2), 0)
    client = Client(room=64)
    ch._burst(client)
    assert len(client.sent) == 1
    assert ch.queue.peek().record.id == "m1"  # still first in line, untouched


async def test_the_reader_refill_bursts_unless_submitting_is_recorded_first():
    ch, store = channel(tps=1000, burst=1000)
    for i in range(6):
        ch.queue.put(job(i), 0)
    client = Client(room=2)
    ch._refill(client)
    assert len(client.sent) == 2 and len(ch.queue) == 4
    # on_submitting_recovery = "unknown": a submit leaves only after its SUBMITTING move
    # is committed (_dispatch_recorded), never from the reader's refill.
    ch._stores_submitting = True
    client.room = 2
    ch._refill(client)
    assert len(client.sent) == 2 and len(ch.queue) == 4 and store.moves == []


class AnyStore:
    """Accepts every store call (the dispatch order is what is tested)."""

    def __getattr__(self, name):
        return lambda *a, **kw: None


async def test_the_reader_refill_does_not_overtake_a_multipart_job(nursery):
    """Window 1: segment 1 of a multipart message goes, then its dispatcher waits for a
    slot for segment 2. The read that frees the slot must let segment 2 go next, not fill
    the slot with the one-segment messages queued behind it (found by review: with the
    refill they all overtook it)."""
    smsc = ScriptedSmsc(password="p")
    port = await nursery.start(smsc.serve)
    cfg = ChannelConfig(
        name="c", system_id="s", password="p", host="127.0.0.1", port=port, tps=100_000, burst=100_000, window=1
    )
    ch = Channel(cfg, AnyStore(), clock=lambda: 1.0)
    ch.queue.put(job(0, segments=2), 0)
    for i in range(1, 21):
        ch.queue.put(job(i), 0)
    client = EsmeClient(cfg.esme_settings(), name="c#0")
    client.on_window_free = partial(ch._refill, client)
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        nursery.start_soon(ch._dispatch, client)
        while sum(isinstance(p, P.SubmitSm) for p in smsc.received) < 22:
            await trio.sleep(0.01)
    order = [p.destination_addr[-2:] for p in smsc.received if isinstance(p, P.SubmitSm)]
    assert order[:2] == ["00", "00"]  # both segments of the multipart message first
    assert sorted(order[2:]) == [f"{i:02d}" for i in range(1, 21)]
    await client.close()


async def test_the_burst_sends_nothing_once_submitting_must_be_recorded_first():
    """A reload may switch the channel to on_submitting_recovery = "unknown" while a
    dispatcher awaits inside a job; the burst it runs next must not send anything whose
    SUBMITTING move is not committed (that is _dispatch_recorded's job)."""
    ch, store = channel(tps=1000, burst=1000)
    for i in range(3):
        ch.queue.put(job(i), 0)
    ch.retune(msgspec.structs.replace(ch.cfg, on_submitting_recovery="unknown"))
    client = Client(room=8)
    ch._burst(client)
    assert client.sent == [] and len(ch.queue) == 3 and store.moves == []


async def test_the_burst_marks_and_sends_as_mark_submitting_and_send_one_do():
    """The burst inlines _mark_submitting and _send_one: a burst and those two called per
    job leave the same records, counters and PDUs."""
    results = []
    for burst in (True, False):
        ch, store = channel(tps=1000, burst=1000)
        jobs = [job(i) for i in range(4)]
        for j in jobs:
            ch.queue.put(j, 0)
        client = Client(room=4)
        if burst:
            ch._burst(client)
        else:
            for j in jobs:
                ch.queue.get_nowait()
                ch._mark_submitting(j, 1.0)
                assert ch._prepare(j, 1.0)
                j.pending = 1
                ch._send_one(client, j, 0)
        results.append((
            [msgspec.to_builtins(j.record) for j in jobs],
            [j.pending for j in jobs],
            [p.encode() for p in client.sent],
            msgspec.to_builtins(ch.stats),
            ch._inflight,
            store.moves,
        ))
    assert results[0] == results[1]
    assert [r["attempts"] for r in results[0][0]] == [1, 1, 1, 1]

"""Messages queued on a channel that is down expire when their validity passes: no
dispatcher takes them (where expiry is checked), so the channel's housekeeping does."""

from __future__ import annotations

import socket

import pytest
import trio

from gateway.channels import Channel, Job
from gateway.config import ChannelConfig, StoreConfig
from gateway.states import State
from gateway.store.records import MessageRecord, SegmentRecord
from gateway.store.sqlite import SqliteStore
from tests.gateway_helpers import wait_until

T0 = 1_700_000_000.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queued(mid: str, expires_at: float) -> tuple[MessageRecord, list[SegmentRecord]]:
    rec = MessageRecord(
        id=mid, tenant="t", source_addr="Acme", destination="4915100000001", text="hi",
        category="otp", priority=0, state=State.QUEUED, channel="c", data_coding=0,
        segment_count=1, created_at=T0, updated_at=T0, expires_at=expires_at,
    )
    return rec, [SegmentRecord(message_id=mid, seq=1)]


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_a_message_queued_on_a_down_channel_expires(nursery, tmp_path, writer):
    store = SqliteStore(StoreConfig(path=str(tmp_path / "gw.db"), batch_wait_ms=1.0, writer=writer))
    await nursery.start(store.run)
    wall = [T0]
    cfg = ChannelConfig(
        name="c", host="127.0.0.1", port=closed_port(), system_id="s", password="p",
        reconnect_min=0.05, reconnect_max=0.2,
    )
    ch = Channel(cfg, store, clock=lambda: wall[0])
    short, long_ = queued("m1", T0 + 30), queued("m2", T0 + 86_400)
    await store.insert_messages([short, long_])
    for rec, segs in (short, long_):
        ch.enqueue(Job(rec, segs))
    await nursery.start(ch.run)

    await trio.sleep(1.5)  # housekeeping ran: nothing has expired yet
    assert not ch.up
    assert len(ch.queue) == 2 and ch.stats.expired == 0

    wall[0] = T0 + 31  # m1's validity has passed
    await wait_until(lambda: ch.stats.expired == 1, timeout=5)
    await store.flush()
    view = await store.get_message("t", "m1")
    assert view.message.state is State.EXPIRED
    assert view.message.error == "validity period passed before submission"
    assert (await store.get_message("t", "m2")).message.state is State.QUEUED
    assert [j.record.id for j in ch.queue] == ["m2"]
    assert not ch.up
    ch._stopped.set()

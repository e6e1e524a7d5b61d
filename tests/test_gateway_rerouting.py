"""Messages that change channel after intake: a reload removing their channel while their
insert commits, channels that split a text differently, held messages released."""

from __future__ import annotations

import pytest
import trio

from gateway import config as C
from gateway.api.schemas import SendMessage
from gateway.channels import Job
from gateway.service import Gateway
from gateway.states import State
from gateway.store.records import MessageRecord, SegmentRecord
from gateway.store.sqlite import SqliteStore
from tests.gateway_helpers import API_KEY, gateway_config_text, wait_until
from tests.sim_helpers import account, make_config, simulator

TEXT_2_SEGMENTS = "a" * 306  # udh8: 2 x 153; udh16: 3 (152 + 152 + 2); payload: 1


def sim_config():
    return make_config([account("gw", "secret")], message_id_format="hex", message_id_width=8)


def config_text(db, channels: list[tuple[str, int, str]], **kw) -> str:
    """gateway_config_text with a concatenation mode per channel."""
    text = gateway_config_text(db, [(name, port) for name, port, _ in channels], **kw)
    for name, _port, concat in channels:
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\nconcatenation = "{concat}"\n', 1)
    return text


async def states(gw: Gateway, tenant, ids: list[str]) -> list[State]:
    return [(await gw.message(tenant, i)).message.state for i in ids]


@pytest.mark.parametrize("count", [1, 3])
async def test_a_channel_removed_while_the_insert_commits_still_answers_and_sends(tmp_path, count):
    async with simulator(sim_config()) as srv, trio.open_nursery() as n:
        cfg = C.parse(config_text(tmp_path / "gw.db", [("a", srv.port, "udh8"), ("b", srv.port, "udh8")]))
        gw = Gateway(cfg, SqliteStore(cfg.store))
        await n.start(gw.run)
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["a"].up and gw.channels["b"].up)
        insert = gw.store.insert_messages
        committed, go = trio.Event(), trio.Event()

        async def slow_insert(built):
            result = await insert(built)
            committed.set()
            await go.wait()  # the reload happens here
            return result

        gw.store.insert_messages = slow_insert
        out = {}

        async def send():
            to = "4915112345678" if count == 1 else [f"4915112{i:06d}" for i in range(count)]
            out["sent"] = await gw.accept(tenant, SendMessage(to=to, text="x"))

        n.start_soon(send)
        await committed.wait()
        await gw.apply_config(C.parse(config_text(tmp_path / "gw.db", [("b", srv.port, "udh8")])))
        go.set()
        await wait_until(lambda: "sent" in out)
        assert len(out["sent"]) == count
        for m in out["sent"]:
            assert m.channel == "b" and not m.duplicate  # stored, and routed again
        await wait_until(lambda: gw.channels["b"].stats.submitted_messages == count, timeout=10)
        n.cancel_scope.cancel()


async def test_messages_go_only_where_the_text_splits_as_at_intake(tmp_path):
    """Channel a (udh8, slow) is removed: its 2-segment messages may go to udh8 channel c
    but not to b (payload: 1 segment) or d (udh16: 3 segments). Until c exists they are
    held; nothing is sent split differently and the gateway keeps running."""
    async with simulator(sim_config()) as srv, trio.open_nursery() as n:
        db = tmp_path / "gw.db"
        both = [("a", srv.port, "udh8"), ("b", srv.port, "payload")]
        cfg = C.parse(config_text(db, both, tps=1.0, burst=1.0))
        gw = Gateway(cfg, SqliteStore(cfg.store))
        await n.start(gw.run)
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["a"].up and gw.channels["b"].up)
        sent = await gw.accept(tenant, SendMessage(to=[f"4915112{i:06d}" for i in range(4)], text=TEXT_2_SEGMENTS))
        assert {m.channel for m in sent} == {"a"} and {m.segments for m in sent} == {2}
        ids = [m.id for m in sent]
        await trio.sleep(0.3)  # a sends what its bucket allows (one message) and keeps the rest
        await gw.apply_config(C.parse(config_text(db, [("b", srv.port, "payload"), ("d", srv.port, "udh16")])))
        await gw.store.flush()
        before = srv.stats.submit_sm  # a's drain finished what it had in flight
        got = await states(gw, tenant, ids)
        held = [i for i, s in zip(ids, got) if s is State.HELD]
        assert len(held) >= 3, got
        assert gw.held == len(held)
        await trio.sleep(1.5)  # the failover loop looks at held messages again: still nowhere
        assert srv.stats.submit_sm == before
        assert await states(gw, tenant, held) == [State.HELD] * len(held)
        await gw.apply_config(
            C.parse(config_text(db, [("b", srv.port, "payload"), ("c", srv.port, "udh8")]))
        )
        async def all_delivered():
            return await states(gw, tenant, held) == [State.DELIVERED] * len(held)

        with trio.fail_after(10):
            while not await all_delivered():
                await trio.sleep(0.05)
        assert gw.held == 0
        assert gw.channels["c"].stats.segments_sent == 2 * len(held)
        assert gw.channels["b"].stats.segments_sent == 0
        n.cancel_scope.cancel()


async def test_changing_a_channels_concatenation_in_place_moves_its_queue(tmp_path):
    """A retune that changes how the channel splits texts: queued messages it would now
    split differently are held (no other channel), not sent with a wrong segment count."""
    async with simulator(sim_config()) as srv, trio.open_nursery() as n:
        db = tmp_path / "gw.db"
        cfg = C.parse(config_text(db, [("a", srv.port, "udh8")], tps=1.0, burst=1.0))
        gw = Gateway(cfg, SqliteStore(cfg.store))
        await n.start(gw.run)
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["a"].up)
        sent = await gw.accept(tenant, SendMessage(to=[f"4915112{i:06d}" for i in range(3)], text=TEXT_2_SEGMENTS))
        await trio.sleep(0.3)
        d = await gw.apply_config(C.parse(config_text(db, [("a", srv.port, "payload")], tps=1.0, burst=1.0)))
        assert d.retuned == ("a",)
        await gw.store.flush()
        got = await states(gw, tenant, [m.id for m in sent])
        assert got.count(State.HELD) >= 2, got
        # the one in flight at the reload (SUBMITTING is kept in memory: stored as queued)
        assert all(s in (State.HELD, State.QUEUED, State.SUBMITTED, State.DELIVERED) for s in got), got
        n.cancel_scope.cancel()


async def test_a_held_message_is_sent_after_a_restart(tmp_path):
    """Stored `held` (no channel could take it), then a restart with a channel for it: it is
    moved to queued before it is submitted, and ends delivered."""
    async with simulator(sim_config()) as srv:
        db = tmp_path / "gw.db"
        cfg = C.parse(config_text(db, [("a", srv.port, "udh8")]))
        async with trio.open_nursery() as first:
            gw = Gateway(cfg, SqliteStore(cfg.store))
            await first.start(gw.run)
            tenant = gw.authenticate(API_KEY)
            # a message for a route no channel runs: the route's only channel is disabled
            await gw.apply_config(
                C.parse(config_text(db, [("a", srv.port, "udh8")]).replace('name = "a"\n', 'name = "a"\nenabled = false\n', 1))
            )
            now = gw.wall()
            rec = MessageRecord(
                id="m1", tenant="t", source_addr="Acme", destination="4915112345678", text="x",
                category="otp", priority=0, state=State.QUEUED, channel="a", data_coding=0,
                segment_count=1, created_at=now, updated_at=now, expires_at=now + 3600,
            )
            segs = [SegmentRecord(message_id="m1", seq=1)]
            await gw.store.insert_messages([(rec, segs)])
            gw._route_job(Job(rec, segs), initial=True)
            await gw.store.flush()
            job_id = rec.id
            assert (await gw.message(tenant, job_id)).message.state is State.HELD
            first.cancel_scope.cancel()
        async with trio.open_nursery() as second:
            gw2 = Gateway(cfg, SqliteStore(cfg.store))
            await second.start(gw2.run)
            tenant = gw2.authenticate(API_KEY)

            async def delivered():
                return (await gw2.message(tenant, job_id)).message.state is State.DELIVERED

            with trio.fail_after(10):
                while not await delivered():
                    await trio.sleep(0.05)
            assert gw2.store.stats.transitions_refused == 0
            second.cancel_scope.cancel()


async def test_a_request_cancelled_while_its_insert_commits_is_still_sent(tmp_path):
    """The client's connection times out (its handler is cancelled) while the insert is
    committing: the store commits it anyway, so the message must still be queued and sent,
    not left stored in no queue until a restart."""
    async with simulator(sim_config()) as srv, trio.open_nursery() as n:
        cfg = C.parse(config_text(tmp_path / "gw.db", [("a", srv.port, "udh8")]))
        gw = Gateway(cfg, SqliteStore(cfg.store))
        await n.start(gw.run)
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["a"].up)
        insert = gw.store.insert_messages
        started, go = trio.Event(), trio.Event()

        async def slow_insert(built):
            # As the store's op: it commits whatever happens to its caller, whose wait for
            # it is cancellable.
            started.set()
            done, box = trio.Event(), {}

            async def commit():
                await go.wait()
                box["results"] = await insert(built)
                done.set()

            n.start_soon(commit)
            await done.wait()
            return box["results"]

        gw.store.insert_messages = slow_insert
        request = trio.CancelScope()

        async def send():
            with request:
                await gw.accept(tenant, SendMessage(to="4915112345678", text="x"))

        n.start_soon(send)
        await started.wait()
        request.cancel()  # the connection's deadline
        await trio.sleep(0.05)
        go.set()
        await wait_until(lambda: gw.channels["a"].stats.submitted_messages == 1, timeout=10)
        n.cancel_scope.cancel()


async def test_a_channel_step_failing_on_reload_does_not_stop_the_others(tmp_path):
    """One channel's retune raises (a bug, or a value validation missed): the reload still
    starts the channel added and stops the one removed in the same file (before, the
    exception ended the reload half way: c kept running on a config without it)."""
    async with simulator(sim_config()) as srv, trio.open_nursery() as n:
        db = tmp_path / "gw.db"
        cfg = C.parse(config_text(db, [("a", srv.port, "udh8"), ("c", srv.port, "udh8")]))
        gw = Gateway(cfg, SqliteStore(cfg.store))
        await n.start(gw.run)
        await wait_until(lambda: gw.channels["a"].up and gw.channels["c"].up)

        def broken(_cfg):
            raise ValueError("retune failed")

        gw.channels["a"].retune = broken
        new = C.parse(config_text(db, [("a", srv.port, "udh16"), ("b", srv.port, "udh8")]))
        d = await gw.apply_config(new)
        assert d.retuned == ("a",) and d.added == ("b",) and d.removed == ("c",)
        assert "b" in gw.channels and "c" not in gw.channels and gw.cfg is new
        await wait_until(lambda: gw.channels["b"].up)
        n.cancel_scope.cancel()


async def test_a_batch_accepted_while_its_channel_drains_stays_queued_in_the_store(tmp_path):
    """SIGTERM's drain started while a request's insert committed: the client gets its
    answer, the messages stay `queued` in the store (the next start sends them) and none
    is put on the draining channel's queue."""
    async with simulator(sim_config()) as srv, trio.open_nursery() as n:
        cfg = C.parse(config_text(tmp_path / "gw.db", [("a", srv.port, "udh8")]))
        gw = Gateway(cfg, SqliteStore(cfg.store))
        await n.start(gw.run)
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["a"].up)
        ch = gw.channels["a"]
        insert = gw.store.insert_messages

        async def insert_then_drain(built):
            result = await insert(built)
            ch._draining = True  # as Channel.drain sets it first
            return result

        gw.store.insert_messages = insert_then_drain
        sent = await gw.accept(tenant, SendMessage(to=[f"4915112{i:06d}" for i in range(3)], text="x"))
        assert [m.state for m in sent] == ["queued"] * 3
        assert len(ch.queue) == 0 and ch.stats.queued == 0
        await gw.store.flush()
        assert await states(gw, tenant, [m.id for m in sent]) == [State.QUEUED] * 3
        n.cancel_scope.cancel()

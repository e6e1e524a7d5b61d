"""Receipts acknowledged from the receipt journal (gateway.store.journal): what the SMSC was
told is durable survives a crash before the store committed it, is applied exactly once at
the next start, and a journal that cannot be trusted stops the start with a typed error."""

from __future__ import annotations

import contextlib
import glob
import sqlite3
import time
from pathlib import Path

import msgspec
import pytest
import trio

from gateway import channels as CH
from gateway import config as C
from gateway.api.tenant import TenantApp
from gateway.daemon import startup_errors
from gateway.service import JOURNAL_SUFFIX, Gateway
from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag
from gateway.store import journal as J
from gateway.store.records import MessageRecord, ReceiptFrame, ReceiptRecord, SegmentRecord, encode_frame
from gateway.store.sqlite import SqliteStore
from tests.gateway_helpers import (
    AsgiClient,
    gateway_config,
    gateway_config_text,
    wait_until,
)
from tests.scripted_smsc import ScriptedSmsc
from tests.test_receipt_effects import stored


def receipt(smsc_id: str, stat: str = "DELIVRD", state: int = 2) -> P.DeliverSm:
    return P.DeliverSm(
        esm_class=0x04,
        short_message=(
            f"id:{smsc_id} sub:001 dlvrd:001 submit date:2611260101 done date:2611260101 "
            f"stat:{stat} err:000 text:"
        ).encode(),
        tlvs=[P.Tlv(Tag.RECEIPTED_MESSAGE_ID, smsc_id), P.Tlv(Tag.MESSAGE_STATE, state)],
    )


def receipt_rows(db) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT smsc_message_id, message_id, state FROM receipts ORDER BY id").fetchall()


def seg_receipt(db, message_id: str) -> str | None:
    """The text of the receipt that settled the message's segment 1 (store v7)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT seg_receipt FROM messages WHERE id = ?", (message_id,)).fetchone()[0]


def journal_files(db) -> list[str]:
    return sorted(glob.glob(f"{db}{JOURNAL_SUFFIX}.*"))


async def running(nursery, tmp_path, store: str = "") -> tuple[ScriptedSmsc, Gateway]:
    """A scripted SMSC and a gateway with one bound channel `a` on it (store gw.db)."""
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    cfg = C.parse(gateway_config_text(tmp_path / "gw.db", [("a", port)], store=store, binds=1))
    gw = Gateway(cfg, SqliteStore(cfg.store))
    await nursery.start(gw.run)
    await wait_until(lambda: gw.channels["a"].up)
    return smsc, gw


async def smsc_id_of(gw: Gateway, mid: str) -> str:
    return (await gw.store.get_view(mid)).segments[0].smsc_message_id


async def send_one(gw: Gateway, db) -> str:
    status, body = await AsgiClient(TenantApp(gw)).request(
        "POST", "/v1/messages", {"to": "4915100000001", "text": "hi", "category": "otp"}
    )
    assert status == 202
    mid = body["messages"][0]["id"]
    await wait_until(lambda: stored(db, mid)[0] == "submitted")
    return mid


@pytest.mark.parametrize("then", ["on", "off"])
async def test_acknowledged_receipts_lost_by_the_store_are_replayed_once(nursery, tmp_path, then):
    """`then`: the journal setting of the starts after the crash; off, the journal's files
    are still replayed (what they hold was acknowledged), and nothing new is journaled."""
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    db = tmp_path / "gw.db"
    cfg = gateway_config(db, [("a", port)], binds=1)
    after = C.parse(gateway_config_text(db, [("a", port)], store=f"receipt_journal = {then == 'on'}\n".lower(), binds=1))
    async with trio.open_nursery() as first:
        store = SqliteStore(cfg.store)
        gw = Gateway(cfg, store)
        await first.start(gw.run)
        await wait_until(lambda: gw.channels["a"].up)
        mid = await send_one(gw, db)
        smsc_id = await smsc_id_of(gw, mid)
        # The process dies before the store commits what the journal holds: the store
        # never sees the receipt ops (the journal frames are written all the same).
        store.record_receipts_nowait = lambda *a, **kw: None
        conn = smsc.connections[0]
        await conn.push(receipt(smsc_id), receipt("ffff"))  # matched, and one nobody sent
        await wait_until(lambda: len(conn.deliver_statuses) == 2)
        assert conn.deliver_statuses == [0, 0]  # acknowledged: the SMSC will not resend
        assert gw.journal is not None and gw.journal.stats.syncs >= 1
        first.cancel_scope.cancel()
    assert stored(db, mid) == ("submitted", ["submitted"])
    assert receipt_rows(db) == []
    assert journal_files(db)

    gw = Gateway(after, SqliteStore(after.store))
    async with trio.open_nursery() as second:
        await second.start(gw.run)  # replays before it is started
        assert stored(db, mid) == ("delivered", ["delivered"])
        # the matched one in its segment's row, the other one a row of its own
        assert receipt_rows(db) == [("ffff", None, "delivered")]
        assert seg_receipt(db, mid).startswith(f"id:{smsc_id} ")
        assert await gw.store.journal_mark() == 1  # the frame of both receipts
        assert gw.channels["a"].stats.receipts_matched == 1
        # new receipts are journaled again (if the journal is on)
        assert gw.channels["a"].journal is (gw.journal if then == "on" else None)
        # the file holding the replayed frame is gone; only the new, empty one is left
        assert len(journal_files(db)) == 1
        second.cancel_scope.cancel()

    # Committed: a third start replays nothing, and no receipt is stored twice.
    gw = Gateway(after, SqliteStore(after.store))
    await nursery.start(gw.run)
    assert receipt_rows(db) == [("ffff", None, "delivered")]
    assert seg_receipt(db, mid).startswith(f"id:{smsc_id} ")
    assert (await gw.snapshot())["receipt_journal"]["replayed"] == 0


def slow_store(gw: Gateway, seconds: float) -> None:
    """Every store batch takes `seconds` longer to commit (writer = "thread")."""
    real = gw.store._execute

    def slow(batch):
        time.sleep(seconds)
        return real(batch)

    gw.store._execute = slow


async def test_a_second_receipt_before_the_first_commits_is_a_duplicate(nursery, tmp_path):
    """The first final receipt is applied in memory when journaled and the store commits
    it later: a second one meanwhile (a retransmission, a sibling bind) must not be matched
    again through the store, which still says `submitted`."""
    smsc, gw = await running(nursery, tmp_path, store='writer = "thread"\n')
    db = tmp_path / "gw.db"
    mid = await send_one(gw, db)
    smsc_id = await smsc_id_of(gw, mid)
    slow_store(gw, 0.5)
    conn = smsc.connections[0]
    await conn.push(receipt(smsc_id))
    await wait_until(lambda: len(conn.deliver_statuses) == 1)
    await conn.push(receipt(smsc_id, "UNDELIV", 5))  # a second, conflicting final receipt
    await wait_until(lambda: len(conn.deliver_statuses) == 2)
    await gw.store.flush()
    ch = gw.channels["a"]
    assert (ch.stats.receipts_matched, ch.stats.receipts_duplicate) == (1, 1)
    assert stored(db, mid) == ("delivered", ["delivered"])
    assert receipt_rows(db) == []  # the first in its segment, the duplicate nowhere
    assert "stat:DELIVRD" in seg_receipt(db, mid)
    assert gw.store.stats.transitions_refused == 0
    assert smsc_id in ch.scope.settling
    await conn.push(receipt("ffff"))  # the next batch forgets what the store has committed
    await wait_until(lambda: len(conn.deliver_statuses) == 3)
    assert smsc_id not in ch.scope.settling


async def test_a_failed_journal_write_and_a_stuck_store_acknowledge_nothing(nursery, tmp_path, monkeypatch):
    """Neither journaled nor committed in time: the SMSC gets an error and sends again."""
    smsc, gw = await running(nursery, tmp_path, store='writer = "thread"\n')
    db = tmp_path / "gw.db"
    mid = await send_one(gw, db)
    smsc_id = await smsc_id_of(gw, mid)

    async def failed(seq: int) -> None:
        await trio.lowlevel.checkpoint()
        raise J.JournalError("disk gone")

    gw.journal.synced = failed  # type: ignore[method-assign]
    monkeypatch.setattr(CH, "RECEIPT_COMMIT_WAIT", 0.2)
    slow_store(gw, 1.0)
    conn = smsc.connections[0]
    await conn.push(receipt(smsc_id))
    await wait_until(lambda: len(conn.deliver_statuses) == 1)
    assert conn.deliver_statuses != [0]


async def test_journaled_receipts_reach_the_store_and_move_its_mark(nursery, tmp_path):
    smsc, gw = await running(nursery, tmp_path)
    db = tmp_path / "gw.db"
    mid = await send_one(gw, db)
    smsc_id = await smsc_id_of(gw, mid)
    conn = smsc.connections[0]
    await conn.push(receipt(smsc_id))
    await wait_until(lambda: conn.deliver_statuses == [0])
    await gw.store.flush()
    assert stored(db, mid) == ("delivered", ["delivered"])
    assert await gw.store.journal_mark() == gw.journal.last_seq == 1
    snap = await gw.snapshot()
    assert snap["receipt_journal"]["frames"] == 1 and snap["receipt_journal"]["failures"] == 0


async def test_without_the_journal_receipts_are_acknowledged_after_their_commit(nursery, tmp_path):
    smsc, gw = await running(nursery, tmp_path, store="receipt_journal = false\n")
    db = tmp_path / "gw.db"
    mid = await send_one(gw, db)
    smsc_id = await smsc_id_of(gw, mid)
    conn = smsc.connections[0]
    await conn.push(receipt(smsc_id))
    await wait_until(lambda: conn.deliver_statuses == [0])
    # acknowledged only after the commit: nothing left to flush
    assert stored(db, mid) == ("delivered", ["delivered"])
    assert gw.journal is None and journal_files(db) == []
    assert (await gw.snapshot())["receipt_journal"] is None


async def test_a_failed_journal_write_falls_back_to_the_commit(nursery, tmp_path):
    """The journal cannot sync: the receipt batch is acknowledged once the store has
    committed it instead (never on a frame that may not be on disk)."""
    smsc, gw = await running(nursery, tmp_path)
    db = tmp_path / "gw.db"
    mids = [await send_one(gw, db) for _ in range(2)]
    ids = [await smsc_id_of(gw, m) for m in mids]

    async def failed(seq: int) -> None:
        await trio.lowlevel.checkpoint()
        raise J.JournalError("disk gone")

    gw.journal.synced = failed  # type: ignore[method-assign]
    conn = smsc.connections[0]
    await conn.push(receipt(ids[0]))
    await wait_until(lambda: conn.deliver_statuses == [0])
    assert stored(db, mids[0]) == ("delivered", ["delivered"])  # committed before the ack

    def broken(payload: bytes) -> int:
        raise J.JournalError("journal broken")

    gw.journal.reserve = broken  # type: ignore[method-assign]
    await conn.push(receipt(ids[1]))
    await wait_until(lambda: conn.deliver_statuses == [0, 0])
    assert stored(db, mids[1]) == ("delivered", ["delivered"])


async def test_a_corrupt_journal_stops_the_start(tmp_path):
    """A damaged frame that is not a torn tail may hold acknowledged receipts: the gateway
    refuses to start (typed error, nothing changed) rather than lose them silently."""
    db = tmp_path / "gw.db"
    cfg = gateway_config(db, [("a", 1)], binds=1)
    async with trio.open_nursery() as first:  # create the store (mark 0)
        await first.start(SqliteStore(cfg.store).run)
        first.cancel_scope.cancel()
    journal = J.ReceiptJournal(str(db) + JOURNAL_SUFFIX)
    journal.open(0)
    frame = ReceiptFrame("a", 1.0, [("1", "1", "delivered", None, "x")])
    for _ in range(2):
        await journal.synced(journal.reserve(encode_frame(frame)))
    journal.close()
    (path,) = map(Path, journal_files(db))
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside the first frame's payload; the second frame is intact
    path.write_bytes(bytes(data))

    with pytest.raises(BaseException) as caught:
        async with trio.open_nursery() as n:
            await n.start(Gateway(cfg, SqliteStore(cfg.store)).run)
    errors = startup_errors(caught.value)
    assert errors is not None and [e.code for e in errors] == ["receipt_journal_corrupt"]
    assert path.read_bytes() == bytes(data)  # left as it was, for the operator


async def test_replayed_receipts_of_a_removed_channel_reach_its_messages(nursery, tmp_path):
    """The journal holds an acknowledged receipt of channel `a`; the gateway restarts with
    `a` removed from the config. Its submitted message is kept (as an orphan) by `b`, and
    the replayed receipt makes it delivered there instead of leaving it to expire."""
    smsc_a, smsc_b = ScriptedSmsc(), ScriptedSmsc()
    port_a = await nursery.start(smsc_a.serve)
    port_b = await nursery.start(smsc_b.serve)
    db = tmp_path / "gw.db"
    cfg = gateway_config(db, [("a", port_a), ("b", port_b)], binds=1)
    after = C.parse(gateway_config_text(db, [("b", port_b)], binds=1))
    async with trio.open_nursery() as first:
        store = SqliteStore(cfg.store)
        gw = Gateway(cfg, store)
        await first.start(gw.run)
        await wait_until(lambda: gw.channels["a"].up and gw.channels["b"].up)
        mid = await send_one(gw, db)
        assert (await gw.store.get_view(mid)).message.channel == "a"
        smsc_id = await smsc_id_of(gw, mid)
        store.record_receipts_nowait = lambda *a, **kw: None  # dies before the store has it
        conn = smsc_a.connections[0]
        await conn.push(receipt(smsc_id), receipt("ffff"))
        await wait_until(lambda: len(conn.deliver_statuses) == 2)
        assert conn.deliver_statuses == [0, 0]
        first.cancel_scope.cancel()
    assert stored(db, mid) == ("submitted", ["submitted"])

    gw = Gateway(after, SqliteStore(after.store))
    await nursery.start(gw.run)
    assert stored(db, mid) == ("delivered", ["delivered"])
    assert receipt_rows(db) == [("ffff", None, "delivered")]
    assert seg_receipt(db, mid).startswith(f"id:{smsc_id} ")
    assert await gw.store.journal_mark() == 1
    assert gw.orphans == 0  # delivered: no longer kept for its expiry
    view = await gw.store.get_view(mid)
    assert view.message.channel == "a" and view.segments[0].state == "delivered"


def _dump(db) -> dict[str, list[tuple]]:
    """Every row of messages, segments and receipts, message ids replaced by destinations
    and concatenation references left out (random; everything else of two runs with the
    same clock is the same)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        dest = dict(conn.execute("SELECT id, destination FROM messages"))
        out = {}
        for table, order in (("messages", "destination"), ("segments", "message_id, seq"), ("receipts", "id")):
            cur = conn.execute(f"SELECT * FROM {table}")
            cols = [d[0] for d in cur.description]
            rows = [
                tuple(
                    dest.get(v, v) if c in ("id", "message_id") else None if c == "concat_ref" else v
                    for c, v in zip(cols, row)
                )
                for row in cur
            ]
            out[table] = sorted(rows, key=repr) if table != "receipts" else rows
    return out


async def _receipts_run(tmp_path, crash: bool) -> dict[str, list[tuple]]:
    """Three messages (one, two and one segments) get a deliver batch: a final receipt for
    each segment but the last message's, which gets an intermediate one (ENROUTE), one for
    no message, and a retransmission of the first. `crash`: the store never commits the
    batch (the journal has it) and a second start replays it."""
    smsc = ScriptedSmsc()
    async with trio.open_nursery() as n:
        port = await n.start(smsc.serve)
        db = tmp_path / "gw.db"
        cfg = gateway_config(db, [("a", port)], binds=1)
        clock = lambda: 1_790_000_000.0  # noqa: E731: every time stamp the same in both runs
        async with trio.open_nursery() as first:
            store = SqliteStore(cfg.store)
            gw = Gateway(cfg, store, wall_clock=clock)
            await first.start(gw.run)
            await wait_until(lambda: gw.channels["a"].up)
            app = AsgiClient(TenantApp(gw))
            mids = []
            for to, text in (("4915100000001", "hi"), ("4915100000002", "x" * 200), ("4915100000003", "yo")):
                status, body = await app.request("POST", "/v1/messages", {"to": to, "text": text, "category": "otp"})
                assert status == 202
                mids.append(body["messages"][0]["id"])
                await wait_until(lambda: stored(db, mids[-1])[0] == "submitted")
            ids = [[s.smsc_message_id for s in (await gw.store.get_view(m)).segments] for m in mids]
            if crash:
                store.record_receipts_nowait = lambda *a, **kw: None
            conn = smsc.connections[0]
            await conn.push(
                receipt(ids[0][0]),
                receipt(ids[1][0]),
                receipt(ids[1][1], "UNDELIV", 5),
                receipt(ids[2][0], "ENROUTE", 1),
                receipt("ffff"),
                receipt(ids[0][0]),  # a retransmission: a duplicate
            )
            await wait_until(lambda: len(conn.deliver_statuses) == 6)
            assert conn.deliver_statuses == [0] * 6
            if not crash:
                await gw.store.flush()
            first.cancel_scope.cancel()
        if crash:
            assert stored(db, mids[0]) == ("submitted", ["submitted"])
            gw = Gateway(cfg, SqliteStore(cfg.store), wall_clock=clock)
            async with trio.open_nursery() as second:
                await second.start(gw.run)  # replays the frame
                assert gw.journal.stats.replayed == 1
                second.cancel_scope.cancel()
        n.cancel_scope.cancel()
    return _dump(db)


async def test_the_journal_replay_stores_the_rows_the_live_path_stores(tmp_path):
    """Store v7: settling receipts in their segment's row, the others as receipts rows; a
    batch replayed from the journal after a crash leaves exactly the rows the live path
    leaves."""
    (tmp_path / "live").mkdir()
    (tmp_path / "replay").mkdir()
    live = await _receipts_run(tmp_path / "live", crash=False)
    replayed = await _receipts_run(tmp_path / "replay", crash=True)
    assert replayed == live
    receipts = live["receipts"]  # id, channel, smsc id, id_key, state, error, raw, at, message, seq
    assert [(r[2], r[4], r[8], r[9]) for r in receipts] == [
        ("4", None, "4915100000003", 1),  # intermediate: linked, settles nothing
        ("ffff", "delivered", None, None),  # unmatched
    ]
    by_dest = {m[4]: m for m in live["messages"]}
    cols = [f.name for f in msgspec.structs.fields(MessageRecord)] + [
        "seg_" + f.name for f in msgspec.structs.fields(SegmentRecord)[2:]
    ]
    one = dict(zip(cols, by_dest["4915100000001"]))
    assert (one["state"], one["seg_state"]) == ("delivered", "delivered")
    assert one["seg_receipt"].startswith("id:1 ") and "stat:DELIVRD" in one["seg_receipt"]
    two = dict(zip(cols, by_dest["4915100000002"]))
    assert (two["state"], two["seg_receipt"].split()[0]) == ("undeliverable", "id:2")
    (seg2,) = live["segments"]
    assert (seg2[0], seg2[1], seg2[2]) == ("4915100000002", 2, "undeliverable")
    assert "stat:UNDELIV" in seg2[-1]
    three = dict(zip(cols, by_dest["4915100000003"]))
    assert (three["state"], three["seg_receipt"]) == ("submitted", None)


async def test_a_frame_written_before_v7_is_replayed(nursery, tmp_path):
    """Journal frames of earlier versions are ReceiptRecord maps (matched ones named their
    segment): replayed like the frames of today, matched again, the settling receipt's text
    into its segment's row."""
    from gateway.smpp.receipt import receipt_id_key

    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    db = tmp_path / "gw.db"
    cfg = gateway_config(db, [("a", port)], binds=1)
    async with trio.open_nursery() as first:
        gw = Gateway(cfg, SqliteStore(cfg.store))
        await first.start(gw.run)
        await wait_until(lambda: gw.channels["a"].up)
        mid = await send_one(gw, db)
        smsc_id = await smsc_id_of(gw, mid)
        old = [
            ReceiptRecord(
                channel="a", smsc_message_id=smsc_id, id_key=receipt_id_key(smsc_id, "hex"),
                state="delivered", error_code="000", raw=f"id:{smsc_id} stat:DELIVRD", received_at=1.0,
                message_id=mid, seq=1,
            ),
            ReceiptRecord(
                channel="a", smsc_message_id="ffff", id_key="ffff", state="delivered",
                raw="id:ffff stat:DELIVRD", received_at=1.0,
            ),
        ]
        await gw.journal.synced(gw.journal.reserve(msgspec.msgpack.encode(old)))
        first.cancel_scope.cancel()  # before the store has it

    gw = Gateway(cfg, SqliteStore(cfg.store))
    await nursery.start(gw.run)
    assert stored(db, mid) == ("delivered", ["delivered"])
    assert seg_receipt(db, mid) == f"id:{smsc_id} stat:DELIVRD"
    assert receipt_rows(db) == [("ffff", None, "delivered")]
    assert await gw.store.journal_mark() == 1

"""Receipts acknowledged from the receipt journal (gateway.store.journal): what the SMSC was
told is durable survives a crash before the store committed it, is applied exactly once at
the next start, and a journal that cannot be trusted stops the start with a typed error."""

from __future__ import annotations

import contextlib
import glob
import sqlite3
import time
from pathlib import Path

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
from gateway.store.records import ReceiptRecord, encode_receipts
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
        assert receipt_rows(db) == [(smsc_id, mid, "delivered"), ("ffff", None, "delivered")]
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
    assert receipt_rows(db) == [(smsc_id, mid, "delivered"), ("ffff", None, "delivered")]
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
    assert receipt_rows(db) == [(smsc_id, mid, "delivered")]
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
    rec = ReceiptRecord(channel="a", smsc_message_id="1", id_key="1", state="delivered", raw="x", received_at=1.0)
    for _ in range(2):
        await journal.synced(journal.reserve(encode_receipts([rec])))
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
    assert receipt_rows(db) == [(smsc_id, mid, "delivered"), ("ffff", None, "delivered")]
    assert await gw.store.journal_mark() == 1
    assert gw.orphans == 0  # delivered: no longer kept for its expiry
    view = await gw.store.get_view(mid)
    assert view.message.channel == "a" and view.segments[0].state == "delivered"

"""A receipt acknowledged to the SMSC is stored together with its effect (segment and
message state): nothing the SMSC will not send again is left to a later, nowait write."""

from __future__ import annotations

import contextlib
import sqlite3

import trio

from gateway.api.tenant import TenantApp
from gateway.service import Gateway
from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag
from gateway.store.sqlite import SqliteStore
from tests.gateway_helpers import AsgiClient, gateway_config, wait_until
from tests.scripted_smsc import ScriptedSmsc


def stored(db, message_id: str) -> tuple[str, list[str]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        # segment 1 is in the message row (store v5), the others in `segments`
        state, first = conn.execute(
            "SELECT state, seg_state FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        rest = conn.execute("SELECT state FROM segments WHERE message_id = ? ORDER BY seq", (message_id,))
        segs = [first] + [s for (s,) in rest]
    return state, segs


async def test_receipt_and_its_effect_commit_together(nursery, tmp_path):
    smsc = ScriptedSmsc()  # accepts submits, sends no receipt by itself
    port = await nursery.start(smsc.serve)
    db = tmp_path / "gw.db"
    cfg = gateway_config(db, [("a", port)], binds=1)
    store = SqliteStore(cfg.store)
    gw = Gateway(cfg, store)
    await nursery.start(gw.run)
    await wait_until(lambda: gw.channels["a"].up)
    text = "x" * 200  # two segments: both receipts in one deliver batch
    status, body = await AsgiClient(TenantApp(gw)).request(
        "POST", "/v1/messages", {"to": "4915100000001", "text": text, "category": "otp"}
    )
    assert status == 202
    mid = body["messages"][0]["id"]
    await wait_until(lambda: stored(db, mid)[0] == "submitted")

    # From now on every nowait write is lost (as if the process died before it committed).
    store.update_segment_nowait = lambda seg: None
    store.set_state_nowait = lambda *a, **kw: None

    conn = smsc.connections[0]
    submits = [p for p in smsc.received if p.command_name == "submit_sm"]
    assert len(submits) == 2
    receipts = []
    for n in range(1, 3):
        smsc_id = f"{n:x}"
        receipts.append(
            P.DeliverSm(
                esm_class=0x04,
                short_message=f"id:{smsc_id} sub:001 dlvrd:001 submit date:2611260101 done date:2611260101 stat:DELIVRD err:000 text:".encode(),
                tlvs=[P.Tlv(Tag.RECEIPTED_MESSAGE_ID, smsc_id), P.Tlv(Tag.MESSAGE_STATE, 2)],
            )
        )
    await conn.push(*receipts)
    await wait_until(lambda: len(conn.deliver_statuses) == 2)
    assert conn.deliver_statuses == [0, 0]
    assert stored(db, mid) == ("delivered", ["delivered", "delivered"])
    assert gw.channels["a"].stats.receipts_matched == 2


async def test_a_receipt_stored_unmatched_before_a_crash_is_applied_at_restart(nursery, tmp_path):
    """A receipt that overtook its submit_sm_resp is stored unmatched and acknowledged;
    linking and applying it were nowait writes. If the process died in between, the next
    start links and applies it (the SMSC will not send it again)."""
    from gateway.store.records import ReceiptRecord

    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    db = tmp_path / "gw.db"
    cfg = gateway_config(db, [("a", port)], binds=1)
    async with trio.open_nursery() as first:
        gw = Gateway(cfg, SqliteStore(cfg.store))
        await first.start(gw.run)
        await wait_until(lambda: gw.channels["a"].up)
        status, body = await AsgiClient(TenantApp(gw)).request(
            "POST", "/v1/messages", {"to": "4915100000001", "text": "hi", "category": "otp"}
        )
        mid = body["messages"][0]["id"]
        await wait_until(lambda: stored(db, mid)[0] == "submitted")
        view = await gw.store.get_view(mid)
        seg = view.segments[0]
        # the early receipt as stored before the crash: unmatched, its effects lost
        await gw.store.record_receipt(
            ReceiptRecord(
                channel="a", smsc_message_id=seg.smsc_message_id, id_key=seg.id_key,
                state="delivered", error_code="000", raw="id:1 stat:DELIVRD",
                received_at=seg.submitted_at + 0.01,
            )
        )
        first.cancel_scope.cancel()
    assert stored(db, mid) == ("submitted", ["submitted"])

    gw = Gateway(cfg, SqliteStore(cfg.store))
    await nursery.start(gw.run)
    assert stored(db, mid) == ("delivered", ["delivered"])
    assert await gw.store.unmatched_receipts() == []
    assert gw.channels["a"].stats.receipts_matched == 1
    assert receipts_of(db) == [("delivered", mid, 1)]  # its row, linked
    assert seg_receipt(db, mid) == "id:1 stat:DELIVRD"  # and its text in the segment's row


def receipts_of(db) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT state, message_id, seq FROM receipts ORDER BY id").fetchall()


def seg_receipt(db, message_id: str) -> str | None:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT seg_receipt FROM messages WHERE id = ?", (message_id,)).fetchone()[0]


def _receipt_pdu(smsc_id: str) -> P.DeliverSm:
    return P.DeliverSm(
        esm_class=0x04,
        short_message=f"id:{smsc_id} sub:001 dlvrd:001 submit date:2611260101 done date:2611260101 stat:DELIVRD err:000 text:".encode(),
        tlvs=[P.Tlv(Tag.RECEIPTED_MESSAGE_ID, smsc_id), P.Tlv(Tag.MESSAGE_STATE, 2)],
    )


async def test_a_receipt_ahead_of_its_resp_keeps_its_row_and_settles_its_segment(nursery, tmp_path):
    """Store v7: a receipt that overtook its submit_sm_resp is stored as a receipts row
    (unmatched), linked to its segment when the resp lands, and applied: its text goes into
    the segment's row too. Counted once by the store."""
    from tests.scripted_smsc import accept

    smsc = ScriptedSmsc()
    held: list[P.Pdu] = []

    def receipt_first(conn, pdu):
        if pdu.command_name != "submit_sm":
            return accept(conn, pdu)
        conn.server.counter += 1
        smsc_id = f"{conn.server.counter:x}"
        held.append(P.make_response(pdu, message_id=smsc_id))  # the resp waits
        return [_receipt_pdu(smsc_id)]

    smsc.on_submit = receipt_first
    port = await nursery.start(smsc.serve)
    db = tmp_path / "gw.db"
    cfg = gateway_config(db, [("a", port)], binds=1)
    gw = Gateway(cfg, SqliteStore(cfg.store))
    await nursery.start(gw.run)
    await wait_until(lambda: gw.channels["a"].up)
    status, body = await AsgiClient(TenantApp(gw)).request(
        "POST", "/v1/messages", {"to": "4915100000001", "text": "hi", "category": "otp"}
    )
    mid = body["messages"][0]["id"]
    conn = smsc.connections[0]
    await wait_until(lambda: conn.deliver_statuses == [0])
    await gw.store.flush()
    assert receipts_of(db) == [("delivered", None, None)]  # unmatched, acknowledged
    assert gw.channels["a"].stats.receipts_early == 1
    await conn.push(held[0])
    await wait_until(lambda: stored(db, mid)[0] == "delivered")
    await gw.store.flush()
    assert stored(db, mid) == ("delivered", ["delivered"])
    assert receipts_of(db) == [("delivered", mid, 1)]
    assert seg_receipt(db, mid) == _receipt_pdu("1").short_message.decode()
    s = gw.store.stats
    assert (s.receipts, s.receipt_rows, s.receipts_matched) == (1, 1, 1)
    view = await gw.store.get_view(mid)
    assert view.segments[0].receipt == seg_receipt(db, mid)

"""on_submitting_recovery = "unknown": the SUBMITTING move is committed before the SMSC
sees the submit_sm (else a crash right after the submit would resend it), and a store that
cannot record it sends nothing."""

from __future__ import annotations

import contextlib
import sqlite3

import msgspec
import trio

from gateway.service import Gateway
from gateway.smpp import pdu as P
from gateway.store import sqlite as S
from gateway.store.sqlite import SqliteStore
from gateway.api.tenant import TenantApp
from tests.gateway_helpers import AsgiClient, accept_with_receipt, gateway_config, wait_until
from tests.scripted_smsc import ScriptedSmsc


def stored_state(db, message_id: str) -> str | None:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT state FROM messages WHERE id = ?", (message_id,)).fetchone()
    return row[0] if row else None


async def test_unknown_policy_commits_submitting_before_the_submit(nursery, tmp_path):
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    db = tmp_path / "gw.db"
    seen: list[str | None] = []
    reply = accept_with_receipt()

    def react(conn, pdu):
        # the gateway's message id is not in the PDU: every stored message is checked
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
            states = [s for (s,) in c.execute("SELECT state FROM messages WHERE destination = ?", (pdu.destination_addr,))]
        seen.extend(states)
        return reply(conn, pdu)

    smsc.on_submit = react
    cfg = gateway_config(db, [("a", port)], on_submitting_recovery="unknown", window=8, tps=1000, burst=100)
    store = SqliteStore(cfg.store)
    flushes = 0
    real_flush = store.flush

    async def counted_flush():
        nonlocal flushes
        flushes += 1
        await real_flush()

    store.flush = counted_flush
    gw = Gateway(cfg, store)
    await nursery.start(gw.run)
    await wait_until(lambda: gw.channels["a"].up)
    flushes = 0
    client = AsgiClient(TenantApp(gw))
    to = [f"49151000{i:05d}" for i in range(30)]
    status, body = await client.request("POST", "/v1/messages", {"to": to, "text": "hi", "category": "otp"})
    assert status == 202
    ids = [m["id"] for m in body["messages"]]
    await wait_until(lambda: all(stored_state(db, i) == "delivered" for i in ids), timeout=10)
    assert len(seen) == 30 and set(seen) == {"submitting"}
    # 30 jobs with a window of 8: they shared commits, not one each
    assert 4 <= flushes <= 10


async def test_unknown_policy_sends_nothing_while_the_store_fails(nursery, tmp_path):
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    cfg = gateway_config(tmp_path / "gw.db", [("a", port)], on_submitting_recovery="unknown")
    # the writer thread's batch call is where the failure is injected: thread mode
    store = SqliteStore(msgspec.structs.replace(cfg.store, writer="thread"))
    gw = Gateway(cfg, store)
    await nursery.start(gw.run)
    await wait_until(lambda: gw.channels["a"].up)
    client = AsgiClient(TenantApp(gw))
    real_execute = store._execute
    failing = True

    def execute(batch):
        if failing and any(op.kind == S._FLUSH for op in batch):  # the dispatcher's flush
            raise sqlite3.OperationalError("disk I/O error")
        return real_execute(batch)

    store._execute = execute
    status, body = await client.request("POST", "/v1/messages", {"to": "4915100000001", "text": "hi", "category": "otp"})
    assert status == 202
    await trio.sleep(0.3)
    assert not [p for p in smsc.received if p.command_name == "submit_sm"]
    assert gw.channels["a"].stats.dispatched >= 1  # it tried, and put the job back
    failing = False
    mid = body["messages"][0]["id"]
    await wait_until(lambda: stored_state(tmp_path / "gw.db", mid) == "submitted", timeout=10)
    assert [p for p in smsc.received if p.command_name == "submit_sm"]


async def test_unknown_policy_drain_gives_back_what_was_not_sent(nursery, tmp_path):
    """At 2 messages/s most recorded jobs wait for rate tokens: a drain (reload, SIGTERM)
    returns them as `queued`, none is left `submitting` (recovery would call it unknown)."""
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    db = tmp_path / "gw.db"
    cfg = gateway_config(db, [("a", port)], on_submitting_recovery="unknown", window=32, tps=2)
    gw = Gateway(cfg, SqliteStore(cfg.store))
    await nursery.start(gw.run)
    await wait_until(lambda: gw.channels["a"].up)
    to = [f"49151000{i:05d}" for i in range(20)]
    status, _ = await AsgiClient(TenantApp(gw)).request(
        "POST", "/v1/messages", {"to": to, "text": "hi", "category": "otp"}
    )
    assert status == 202
    await trio.sleep(0.3)
    left = await gw.channels["a"].drain_and_stop(timeout=1)
    await gw.store.flush()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
        states = dict(c.execute("SELECT state, count(*) FROM messages GROUP BY state"))
    sent = len([p for p in smsc.received if p.command_name == "submit_sm"])
    assert "submitting" not in states, states
    assert states.get("queued", 0) == len(left) == 20 - sent


async def test_a_retry_carries_the_validity_left_not_the_first_one(nursery, tmp_path):
    from gateway.smpp.constants import CommandStatus

    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    validity: list[str] = []
    clock = [1_800_000_000.0]

    def react(conn, pdu):
        validity.append(pdu.validity_period)
        if len(validity) == 1:
            clock[0] += 3600  # an hour passes before the retry goes out
            return [P.error_response(pdu.command_id, pdu.sequence_number, CommandStatus.ESME_RTHROTTLED)]
        return [P.make_response(pdu, message_id="1")]

    smsc.on_submit = react
    cfg = gateway_config(tmp_path / "gw.db", [("a", port)])
    gw = Gateway(cfg, SqliteStore(cfg.store), wall_clock=lambda: clock[0])
    await nursery.start(gw.run)
    await wait_until(lambda: gw.channels["a"].up)
    status, _ = await AsgiClient(TenantApp(gw)).request(
        "POST", "/v1/messages", {"to": "4915100000001", "text": "hi", "category": "otp"}
    )
    assert status == 202
    await wait_until(lambda: len(validity) == 2, timeout=10)
    # "0000DDhhmmss000R": 24 h at first, 23 h on the retry
    assert validity[0] == "000001000000000R" and validity[1] == "000000230000000R"


async def test_resubmit_policy_stores_the_attempt_with_its_outcome(nursery, tmp_path):
    """on_submitting_recovery = "resubmit" (default): SUBMITTING is not stored (after a
    crash it would be resubmitted exactly like the stored QUEUED); the submit's outcome
    stores the chain QUEUED -> SUBMITTING -> SUBMITTED with the attempt count, the
    segment's version in the same op."""
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    db = tmp_path / "gw.db"
    ids: list[str] = []
    smsc.on_submit = lambda conn, pdu: []  # no answer yet: the message stays in flight
    cfg = gateway_config(db, [("a", port)], window=8, tps=1000, burst=100)
    store = SqliteStore(cfg.store)
    gw = Gateway(cfg, store)
    await nursery.start(gw.run)
    await wait_until(lambda: gw.channels["a"].up)
    status, body = await AsgiClient(TenantApp(gw)).request(
        "POST", "/v1/messages", {"to": "4915100000001", "text": "hi", "category": "otp"}
    )
    assert status == 202
    ids.append(body["messages"][0]["id"])
    await wait_until(lambda: len(smsc.received) >= 2)  # bind + submit_sm
    await store.flush()
    assert stored_state(db, ids[0]) == "queued"
    conn = smsc.connections[0]
    submit = [p for p in smsc.received if p.command_name == "submit_sm"][0]
    await conn.push(P.SubmitSmResp(sequence_number=submit.sequence_number, message_id="0A"))
    await wait_until(lambda: stored_state(db, ids[0]) == "submitted")
    view = await store.get_view(ids[0])
    assert view.message.attempts == 1 and view.message.submitted_at is not None
    assert view.segments[0].smsc_message_id == "0A" and view.segments[0].id_key == "10"
    assert store.stats.transitions_refused == 0

"""Gateway behaviours not covered elsewhere: a reload removing a channel with a backlog
while traffic keeps coming, receipts nobody submitted, duplicate receipts end to end,
the API's no_route answer (nothing stored, no quota spent), a window change applied
without a reconnect."""

from __future__ import annotations

import contextlib
import sqlite3

import trio

from gateway import config as C
from gateway.api.schemas import SendMessage
from gateway.api.tenant import TenantApp
from gateway.service import Gateway
from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag
from gateway.states import State
from gateway.store.sqlite import SqliteStore
from tests.gateway_helpers import API_KEY, AsgiClient, gateway_config_text, wait_until
from tests.scripted_smsc import ScriptedSmsc
from tests.sim_helpers import account, make_config, simulator


def sim_config(**acct):
    return make_config([account("gw", "secret", **acct)], message_id_format="hex", message_id_width=8)


async def start(nursery, cfg: C.Config) -> Gateway:
    gw = Gateway(cfg, SqliteStore(cfg.store))
    await nursery.start(gw.run)
    return gw


def rows(gw: Gateway, sql: str, *args) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(gw.store.path)) as conn:
        return conn.execute(sql, args).fetchall()


async def states(gw: Gateway, tenant, ids: list[str]) -> list[State]:
    return [(await gw.message(tenant, i)).message.state for i in ids]


async def wait_states(gw: Gateway, tenant, ids: list[str], want: State, timeout: float = 10.0) -> None:
    got: list[State] = []
    try:
        with trio.fail_after(timeout):
            while True:
                got = await states(gw, tenant, ids)
                if got == [want] * len(ids):
                    return
                await trio.sleep(0.05)
    except trio.TooSlowError:
        raise AssertionError(f"not all {want.value}: {sorted({s.value for s in got})} {got.count(want)}/{len(ids)}") from None


# ---- 1. reload removing a channel with queued messages, traffic continuing ----------------


async def test_removing_a_channel_with_a_backlog_under_traffic_loses_nothing(nursery, tmp_path):
    """`a` (1 msg/s) holds a backlog of 20 queued messages when a reload removes it, while
    another task keeps sending: every accepted message ends delivered through b, once."""
    async with simulator(sim_config()) as srv:
        db = tmp_path / "gw.db"
        both = gateway_config_text(db, [("a", srv.port), ("b", srv.port)])
        both = both.replace('name = "a"\n', 'name = "a"\ntps = 1.0\nburst = 1.0\n', 1)
        gw = await start(nursery, C.parse(both))
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["a"].up and gw.channels["b"].up)
        first = await gw.accept(tenant, SendMessage(to=[f"4915112{i:06d}" for i in range(20)], text="x"))
        assert {m.channel for m in first} == {"a"}
        ids = [m.id for m in first]
        await trio.sleep(0.3)  # a sends one (its burst), the rest stays queued on a
        assert len(gw.channels["a"].queue) >= 17

        reloading = {"on": False, "during": 0}
        errors: list[BaseException] = []
        sender_done = trio.Event()

        async def keep_sending():
            try:
                for i in range(60):
                    try:
                        got = await gw.accept(tenant, SendMessage(to=f"4917012{i:06d}", text="y"))
                    except Exception as e:  # noqa: BLE001 - reported by the assertion below
                        errors.append(e)
                        continue
                    ids.extend(m.id for m in got)
                    reloading["during"] += reloading["on"]
                    await trio.sleep(0.01)
            finally:
                sender_done.set()

        nursery.start_soon(keep_sending)
        await wait_until(lambda: len(ids) >= 25)
        reloading["on"] = True
        d = await gw.apply_config(C.parse(gateway_config_text(db, [("b", srv.port)])))
        reloading["on"] = False
        assert d.removed == ("a",)
        assert "a" not in gw.channels
        with trio.fail_after(10):
            await sender_done.wait()
        assert errors == []
        assert len(ids) == 80 and len(set(ids)) == 80
        assert reloading["during"] > 0  # messages were accepted while the reload ran
        await wait_states(gw, tenant, ids, State.DELIVERED, timeout=15)
        await gw.store.flush()
        open_counts = await gw.store.count_open()
        assert sum(open_counts.values()) == 0, open_counts
        assert gw.held == 0 and gw.store.stats.transitions_refused == 0
        # each message went to the SMSC once: nothing lost, nothing sent twice
        assert srv.stats.submit_sm == 80
        (stored,) = rows(gw, "SELECT count(*) FROM messages WHERE state = 'delivered'")
        assert stored == (80,)


# ---- 2. a receipt for an id the gateway never submitted ------------------------------------


async def test_unmatched_receipt_is_acknowledged_stored_and_counted(nursery, tmp_path):
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    gw = await start(nursery, C.parse(gateway_config_text(tmp_path / "gw.db", [("a", port)])))
    await wait_until(lambda: gw.channels["a"].up)
    conn = smsc.connections[-1]
    text = (
        "id:deadbeef sub:001 dlvrd:001 submit date:2611260101 done date:2611260101 "
        "stat:DELIVRD err:000 text:"
    )
    receipt = P.DeliverSm(
        esm_class=0x04,
        short_message=text.encode(),
        tlvs=[P.Tlv(Tag.RECEIPTED_MESSAGE_ID, "deadbeef"), P.Tlv(Tag.MESSAGE_STATE, 2)],
    )
    await conn.push(receipt)
    await wait_until(lambda: len(conn.deliver_statuses) == 1)
    assert conn.deliver_statuses == [0]  # acknowledged: the SMSC will not send it again
    ch = gw.channels["a"]
    assert ch.stats.receipts == 1
    assert ch.stats.receipts_unmatched == 1 and ch.stats.receipts_matched == 0
    await gw.store.flush()
    got = rows(gw, "SELECT channel, smsc_message_id, state, message_id, seq, raw FROM receipts")
    assert got == [("a", "deadbeef", "delivered", None, None, text)]
    assert rows(gw, "SELECT count(*) FROM messages") == [(0,)]


# ---- 3. every receipt sent twice ------------------------------------------------------------


async def test_duplicate_receipts_finish_each_message_once(nursery, tmp_path):
    n = 12
    async with simulator(sim_config(faults={"duplicate_receipts": 1.0})) as srv:
        gw = await start(nursery, C.parse(gateway_config_text(tmp_path / "gw.db", [("a", srv.port)])))
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["a"].up)
        sent = await gw.accept(tenant, SendMessage(to=[f"4915112{i:06d}" for i in range(n)], text="x"))
        ids = [m.id for m in sent]
        await wait_states(gw, tenant, ids, State.DELIVERED)
        # both copies of every receipt reached the gateway and were acknowledged
        await wait_until(lambda: srv.stats.receipts_acked == 2 * n)
        assert srv.stats.faults["duplicate_receipts"] == n
        ch = gw.channels["a"]
        assert ch.stats.receipts == 2 * n
        assert ch.stats.receipts_matched == n
        assert ch.stats.receipts_duplicate == n
        await gw.store.flush()
        assert gw.store.stats.finished.get("delivered") == n
        assert gw.store.stats.transitions_refused == 0
        for mid in ids:
            view = await gw.message(tenant, mid)
            (seg,) = view.segments
            assert seg.state == "delivered" and seg.receipt_at is not None
            assert "stat:DELIVRD" in seg.receipt  # the first copy, in its segment's row
        # the copies are stored nowhere; the receipt that settled each is in its segment's
        # row (store v7), not in the receipts table
        assert rows(gw, "SELECT count(*) FROM receipts") == [(0,)]
        assert (gw.store.stats.receipts, gw.store.stats.receipt_rows) == (n, 0)


# ---- 4. the API's no_route -------------------------------------------------------------------


async def test_no_route_is_422_stores_nothing_and_spends_no_quota(nursery, tmp_path):
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    text = gateway_config_text(tmp_path / "gw.db", [("a", port)])
    catch_all = '[[routes]]\nchannels = ["a"]\n'
    assert catch_all in text
    text = text.replace(catch_all, '[[routes]]\nprefix = "49"\nchannels = ["a"]\n')
    text = text.replace('id = "t"\n', 'id = "t"\ndaily_quota = 1\n', 1)
    gw = await start(nursery, C.parse(text))
    await wait_until(lambda: gw.channels["a"].up)
    client = AsgiClient(TenantApp(gw))

    async def stored() -> int:
        await gw.store.flush()
        return rows(gw, "SELECT count(*) FROM messages")[0][0]

    for body in (
        {"to": "4415112345678", "text": "x"},
        {"to": "+1 202 555 0100", "text": "x"},
        # one recipient outside the routes refuses the whole batch
        {"to": ["4915112345678", "3312345678"], "text": "x"},
    ):
        status, err = await client.request("POST", "/v1/messages", body)
        assert status == 422, err
        assert err["error"]["code"] == "no_route"
        assert await stored() == 0
    assert not any(p.command_id == P.SubmitSm.command_id for p in smsc.received)
    # the quota of 1 is untouched: a routable message is accepted, and then it is spent
    status, ok = await client.request("POST", "/v1/messages", {"to": "4915112345678", "text": "x"})
    assert status == 202, ok
    assert await stored() == 1
    status, err = await client.request("POST", "/v1/messages", {"to": "4915112345679", "text": "x"})
    assert status == 429 and err["error"]["code"] == "quota_exceeded"
    assert await stored() == 1


# ---- 5. a window change is applied in place ---------------------------------------------------


async def test_window_change_by_reload_applies_without_reconnect(nursery, tmp_path):
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    held: list[tuple] = []

    def hold(conn, pdu):  # submits stay unanswered until the test answers them
        if pdu.command_id == P.SubmitSm.command_id:
            held.append((conn, pdu))

    smsc.on_submit = hold
    db = tmp_path / "gw.db"
    gw = await start(nursery, C.parse(gateway_config_text(db, [("a", port)], window=1, response_timeout=10.0)))
    tenant = gw.authenticate(API_KEY)
    ch = gw.channels["a"]
    await wait_until(lambda: ch.up)
    (client,) = ch.clients
    assert client.settings.window == 1
    before = ch.snapshot()["binds"][0]
    binds_before, conns_before = smsc.binds, len(smsc.connections)

    sent = await gw.accept(tenant, SendMessage(to=[f"4915112{i:06d}" for i in range(5)], text="x"))
    await wait_until(lambda: len(held) == 1)
    await trio.sleep(0.2)
    assert len(held) == 1  # window 1: one submit outstanding, the rest waits

    d = await gw.apply_config(
        C.parse(gateway_config_text(db, [("a", port)], window=8, response_timeout=10.0))
    )
    assert d.retuned == ("a",) and d.reconnect == () and d.removed == () and d.added == ()
    assert gw.channels["a"] is ch and ch.clients == [client]
    assert client.settings.window == 8
    assert client._session is not None and client._session.window == 8
    # the waiting messages leave at once over the same bind, with the first still unanswered
    await wait_until(lambda: len(held) == 5)
    for conn, pdu in held:
        await conn.push(P.make_response(pdu, message_id=f"{pdu.sequence_number:x}"))
    await wait_until(lambda: ch.stats.submitted_messages == 5)
    await gw.store.flush()
    assert await states(gw, tenant, [m.id for m in sent]) == [State.SUBMITTED] * 5
    after = ch.snapshot()["binds"][0]
    assert after["connects"] == before["connects"] == 1
    assert after["binds"] == before["binds"] == 1
    assert after["disconnects"] == before["disconnects"] == 0
    assert (smsc.binds, len(smsc.connections)) == (binds_before, conns_before)

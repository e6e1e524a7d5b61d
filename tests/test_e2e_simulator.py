"""The gateway against the bundled SMSC simulator on 127.0.0.1: intake, routing,
throttling, submit, receipts, multipart UCS2, failover, reload mid-traffic."""

from __future__ import annotations

import pytest
import trio

from gateway import config as C
from gateway.api.schemas import SendMessage
from gateway.service import Gateway
from gateway.smpp import text as T
from gateway.store.sqlite import SqliteStore
from simulators.smsc.config import Faults
from tests.gateway_helpers import API_KEY, gateway_config_text, wait_until
from tests.sim_helpers import account, make_config, simulator

FINAL = {"delivered", "undeliverable", "expired", "rejected", "failed", "unknown"}


def sim_config(**receipts):
    return make_config(
        [
            account(
                "gw",
                "secret",
                receipts={"prefix_outcomes": {"4900": "UNDELIV"}, **receipts},
            )
        ],
        message_id_format="hex",
        message_id_width=8,
    )


async def start_gateway(nursery, tmp_path, channels, **kw) -> Gateway:
    cfg = C.parse(gateway_config_text(tmp_path / "gw.db", channels, **kw))
    gw = Gateway(cfg, SqliteStore(cfg.store))
    await nursery.start(gw.run)
    return gw


async def states(gw: Gateway, tenant, ids: list[str]) -> list[str]:
    return [(await gw.message(tenant, i)).message.state.value for i in ids]


async def wait_final(gw: Gateway, tenant, ids: list[str], timeout: float = 15.0) -> list[str]:
    with trio.fail_after(timeout):
        while True:
            got = await states(gw, tenant, ids)
            if all(s in FINAL for s in got):
                return got
            await trio.sleep(0.05)


async def test_send_route_submit_receipts_and_query(nursery, tmp_path):
    async with simulator(sim_config()) as srv:
        gw = await start_gateway(nursery, tmp_path, [("sim", srv.port)])
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["sim"].up)
        sent = await gw.accept(
            tenant,
            SendMessage(to=[f"4915112345{i:03d}" for i in range(20)] + ["4900111222333"], text="Hello"),
        )
        got = await wait_final(gw, tenant, [m.id for m in sent])
        assert got == ["delivered"] * 20 + ["undeliverable"]
        view = await gw.message(tenant, sent[0].id)
        seg = view.segments[0]
        assert seg.state == "delivered" and seg.smsc_message_id and len(seg.smsc_message_id) == 8
        # the simulator saw exactly what the gateway submitted, and every receipt was acked
        assert srv.stats.submit_sm == 21
        await wait_until(lambda: srv.stats.receipts_acked == 21)


async def test_multipart_ucs2_is_split_submitted_and_reassembled(nursery, tmp_path):
    text = "【Acme】您的验证码是 482913，请在五分钟内输入。如非本人操作，请忽略本短信。" * 3
    n = T.segment_count(text)
    assert n >= 2
    async with simulator(sim_config()) as srv:
        gw = await start_gateway(nursery, tmp_path, [("sim", srv.port)])
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["sim"].up)
        (m,) = await gw.accept(tenant, SendMessage(to="4915112345678", text=text, category="otp"))
        assert m.segments == n
        assert await wait_final(gw, tenant, [m.id]) == ["delivered"]
        view = await gw.message(tenant, m.id)
        assert [s.seq for s in view.segments] == list(range(1, n + 1))
        assert all(s.state == "delivered" for s in view.segments)
        assert len({s.smsc_message_id for s in view.segments}) == n  # one id per segment
        assert view.message.data_coding == 8
        # the concatenation reference is fixed at intake and stored: a resend after a
        # restart builds the same UDH as the segments the SMSC already has
        assert view.message.concat_ref is not None


@pytest.mark.parametrize(
    "faults,count",
    [
        ({"max_tps": 40}, 120),
        # ESME_RSYSERR is not a throttling status on its own: as a generic_nack it still
        # halves the channel's rate, and the segments are retried, not failed
        ({"generic_nack": 0.3, "generic_nack_status": "ESME_RSYSERR"}, 60),
    ],
    ids=["throttled", "generic_nack_syserr"],
)
async def test_an_smsc_pushing_back_slows_the_channel_but_loses_nothing(nursery, tmp_path, faults, count):
    cfg = make_config([account("gw", "secret", faults=faults)], message_id_format="hex")
    async with simulator(cfg) as srv:
        gw = await start_gateway(nursery, tmp_path, [("sim", srv.port)], tps=200.0)
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["sim"].up)
        sent = await gw.accept(tenant, SendMessage(to=[f"4915112{i:06d}" for i in range(count)], text="x"))
        got = await wait_final(gw, tenant, [m.id for m in sent], timeout=30)
        assert got == ["delivered"] * count
        ch = gw.channels["sim"]
        assert ch.stats.throttled > 0 and ch.stats.retries > 0
        assert ch.rate.decreases > 0  # AIMD backed off


async def test_failover_when_a_channel_is_down(nursery, tmp_path, monkeypatch):
    import gateway.service as service

    monkeypatch.setattr(service, "FAILOVER_AFTER", 0.5)
    async with simulator(sim_config()) as live:
        closed = trio.socket.socket()
        await closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]  # bound, never listening: connections refused
        async with trio.open_nursery() as inner:
            async with simulator(sim_config()) as doomed:
                gw = await start_gateway(
                    inner, tmp_path, [("a", doomed.port), ("b", live.port), ("dead", dead_port)], tps=20.0
                )
                tenant = gw.authenticate(API_KEY)
                await wait_until(lambda: gw.channels["a"].up and gw.channels["b"].up)
                # a is first in the route: everything queues on a (20 TPS: most stays queued)
                sent = await gw.accept(tenant, SendMessage(to=[f"4915112{i:06d}" for i in range(60)], text="x"))
                assert {m.channel for m in sent} == {"a"}
                await trio.sleep(0.3)
            # a's SMSC is gone: after FAILOVER_AFTER its queue moves to b
            await wait_until(lambda: not gw.channels["a"].up)
            got = await wait_final(gw, tenant, [m.id for m in sent], timeout=30)
            assert got == ["delivered"] * 60
            views = [await gw.message(tenant, m.id) for m in sent]
            assert {v.message.channel for v in views} == {"a", "b"}
            # intake skips channels that are down
            more = await gw.accept(tenant, SendMessage(to="4915112999999", text="y"))
            assert more[0].channel == "b"
            inner.cancel_scope.cancel()
        closed.close()


async def test_reload_add_remove_channel_and_tps_mid_traffic_loses_nothing(nursery, tmp_path):
    async with simulator(sim_config()) as srv:
        gw = await start_gateway(nursery, tmp_path, [("a", srv.port)], tps=300.0)
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["a"].up)
        ids: list[str] = []

        async def traffic():
            for k in range(8):
                sent = await gw.accept(
                    tenant, SendMessage(to=[f"49170{k:02d}{i:05d}" for i in range(25)], text=f"wave {k}")
                )
                ids.extend(m.id for m in sent)
                await trio.sleep(0.15)

        async with trio.open_nursery() as n:
            n.start_soon(traffic)
            await trio.sleep(0.3)
            # add channel b, change a's TPS: a keeps its binds
            binds_before = gw.channels["a"].clients[0].stats.binds
            new = C.parse(gateway_config_text(tmp_path / "gw.db", [("a", srv.port), ("b", srv.port)], tps=500.0))
            d = await gw.apply_config(new)
            assert d.added == ("b",) and d.retuned == ("a",)
            assert gw.channels["a"].rate.configured_rate == 500.0
            assert gw.channels["a"].clients[0].stats.binds == binds_before
            await trio.sleep(0.4)
            # remove a while traffic flows: its queue drains into b
            new2 = C.parse(gateway_config_text(tmp_path / "gw.db", [("b", srv.port)], tps=500.0))
            d2 = await gw.apply_config(new2)
            assert d2.removed == ("a",)
        got = await wait_final(gw, tenant, ids, timeout=30)
        assert len(ids) == 200 and got == ["delivered"] * 200


@pytest.mark.parametrize("fault", [{"drop_after": 15}, {"generic_nack": 0.3}, {"receipt_before_resp": 1.0}])
async def test_faulty_smsc_still_every_message_final(nursery, tmp_path, fault):
    cfg = make_config([account("gw", "secret")], message_id_format="hex")
    async with simulator(cfg) as srv:
        srv.set_faults("gw", Faults(**fault))
        gw = await start_gateway(nursery, tmp_path, [("sim", srv.port)], window=8)
        tenant = gw.authenticate(API_KEY)
        await wait_until(lambda: gw.channels["sim"].up)
        sent = await gw.accept(tenant, SendMessage(to=[f"4915112{i:06d}" for i in range(60)], text="x"))
        got = await wait_final(gw, tenant, [m.id for m in sent], timeout=30)
        assert got == ["delivered"] * 60


async def test_daily_quota_survives_a_restart(nursery, tmp_path):
    extra_quota = 'daily_quota = 5\n'
    async with simulator(sim_config()) as srv:
        text = gateway_config_text(tmp_path / "gw.db", [("sim", srv.port)]).replace(
            "tps = 10000\n", "tps = 10000\n" + extra_quota, 1
        )
        cfg = C.parse(text)
        async with trio.open_nursery() as first:
            gw = Gateway(cfg, SqliteStore(cfg.store))
            await first.start(gw.run)
            tenant = gw.authenticate(API_KEY)
            await gw.accept(tenant, SendMessage(to=[f"4915112{i:06d}" for i in range(4)], text="x"))
            first.cancel_scope.cancel()
        gw2 = Gateway(cfg, SqliteStore(cfg.store))
        await nursery.start(gw2.run)
        tenant = gw2.authenticate(API_KEY)
        await gw2.accept(tenant, SendMessage(to="4915112999999", text="x"))  # the 5th
        from gateway.errors import QuotaExceeded

        with pytest.raises(QuotaExceeded):
            await gw2.accept(tenant, SendMessage(to="4915112999998", text="x"))

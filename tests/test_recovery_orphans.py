"""A message submitted by a channel that is no longer configured after a restart: kept by
a running channel only to be expired in time (its SMSC ids are not matched against ours)."""

from __future__ import annotations

import trio

from gateway.api.tenant import TenantApp
from gateway.service import Gateway
from gateway.states import State
from gateway.store.sqlite import SqliteStore
from tests.gateway_helpers import AsgiClient, gateway_config, wait_until
from tests.scripted_smsc import ScriptedSmsc


async def submitted_through(cfg, clock: list[float], channel: str) -> str:
    """Run a gateway on `cfg` until one message is submitted through `channel` (its SMSC
    sends no receipt), then stop it: the message stays `submitted` in the store."""
    async with trio.open_nursery() as first:
        gw = Gateway(cfg, SqliteStore(cfg.store), wall_clock=lambda: clock[0])
        await first.start(gw.run)
        await wait_until(lambda: all(ch.up for ch in gw.channels.values()))
        status, body = await AsgiClient(TenantApp(gw)).request(
            "POST", "/v1/messages", {"to": "4915100000001", "text": "hi", "category": "otp"}
        )
        assert status == 202
        mid = body["messages"][0]["id"]
        await wait_until(lambda: any(mid in ch._awaiting for ch in gw.channels.values()))
        assert mid in gw.channels[channel]._awaiting  # the first channel of the route
        await gw.store.flush()
        first.cancel_scope.cancel()
    return mid


async def test_submitted_message_of_a_removed_channel_expires(nursery, tmp_path):
    old_smsc, new_smsc = ScriptedSmsc(), ScriptedSmsc()
    old_port = await nursery.start(old_smsc.serve)
    new_port = await nursery.start(new_smsc.serve)
    db = tmp_path / "gw.db"
    clock = [1_800_000_000.0]

    # 1) channel "old" takes the message; its SMSC accepts it and never sends a receipt
    mid = await submitted_through(gateway_config(db, [("old", old_port)]), clock, "old")

    # 2) restart with only channel "new": the message is adopted as an orphan
    cfg = gateway_config(db, [("new", new_port)])
    gw = Gateway(cfg, SqliteStore(cfg.store), wall_clock=lambda: clock[0])
    await nursery.start(gw.run)
    new = gw.channels["new"]
    assert gw.orphans == 1 and mid in new._awaiting
    view = await gw.store.get_view(mid)
    assert view.message.state is State.SUBMITTED and view.message.channel == "old"
    key = view.segments[0].id_key
    assert key and key not in new._by_key  # the other SMSC's ids are not matched to it

    # 3) validity + the receipt grace period pass: housekeeping expires it
    clock[0] = view.message.expires_at + 3601
    await wait_until(lambda: mid not in new._awaiting, timeout=5)
    await gw.store.flush()
    view = await gw.store.get_view(mid)
    assert view.message.state is State.EXPIRED
    assert view.segments[0].state == "expired"


async def test_an_orphan_goes_back_to_its_channel_when_it_runs_again(nursery, tmp_path):
    """Disabled at restart, enabled again by a reload: the channel takes its submitted
    message back (receipts match again, indexed by its SMSC id); nobody else expires it."""
    from gateway import config as C
    from gateway.smpp import pdu as P
    from gateway.smpp.constants import Tag
    from tests.gateway_helpers import gateway_config_text

    old_smsc, new_smsc = ScriptedSmsc(), ScriptedSmsc()
    old_port = await nursery.start(old_smsc.serve)
    new_port = await nursery.start(new_smsc.serve)
    db = tmp_path / "gw.db"
    both = gateway_config_text(db, [("old", old_port), ("new", new_port)], binds=1)
    disabled = both.replace('name = "old"\n', 'name = "old"\nenabled = false\n')

    mid = await submitted_through(C.parse(both), [1_800_000_000.0], "old")

    cfg = C.parse(disabled)
    gw = Gateway(cfg, SqliteStore(cfg.store))
    await nursery.start(gw.run)
    assert "old" not in gw.channels and gw.orphans == 1
    assert mid in gw.channels["new"]._awaiting

    await gw.apply_config(C.parse(both))  # "old" runs again
    await wait_until(lambda: gw.channels["old"].up)
    old = gw.channels["old"]
    assert gw.orphans == 0 and mid in old._awaiting and mid not in gw.channels["new"]._awaiting
    view = await gw.store.get_view(mid)
    assert old._by_key[view.segments[0].id_key][0].record.id == mid

    smsc_id = view.segments[0].smsc_message_id
    receipt = P.DeliverSm(
        esm_class=0x04,
        short_message=f"id:{smsc_id} sub:001 dlvrd:001 submit date:2611260101 done date:2611260101 stat:DELIVRD err:000 text:".encode(),
        tlvs=[P.Tlv(Tag.RECEIPTED_MESSAGE_ID, smsc_id), P.Tlv(Tag.MESSAGE_STATE, 2)],
    )
    await wait_until(lambda: len(old_smsc.connections) >= 2)
    await old_smsc.connections[-1].push(receipt)
    await wait_until(lambda: old.stats.receipts_matched == 1)
    await gw.store.flush()
    assert (await gw.store.get_view(mid)).message.state is State.DELIVERED


async def test_the_orphan_count_drops_when_an_orphan_expires(nursery, tmp_path):
    old_smsc, new_smsc = ScriptedSmsc(), ScriptedSmsc()
    old_port = await nursery.start(old_smsc.serve)
    new_port = await nursery.start(new_smsc.serve)
    db = tmp_path / "gw.db"
    clock = [1_800_000_000.0]
    mid = await submitted_through(gateway_config(db, [("old", old_port)]), clock, "old")
    cfg = gateway_config(db, [("new", new_port)])
    gw = Gateway(cfg, SqliteStore(cfg.store), wall_clock=lambda: clock[0])
    await nursery.start(gw.run)
    assert gw.orphans == 1
    clock[0] += 10 * 86400  # long past its validity
    await wait_until(lambda: gw.orphans == 0, timeout=5)

"""Every fault personality of the simulator, observed from a real ESME connection."""

from __future__ import annotations

import pytest
import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, CommandStatus, Tag
from gateway.smpp.session import InvalidPdu, RequestReceived, ResponseReceived, Unbound
from simulators.smsc.config import Faults
from tests.sim_helpers import account, esme, make_config, simulator, wait_for

S = CommandStatus


def faulty(**faults) -> object:
    return make_config([account(faults=faults)])


def submit(dest: str = "491701234567") -> P.Pdu:
    return P.SubmitSm(
        source_addr="Acme", destination_addr=dest, short_message=b"hi", registered_delivery=1
    )


async def statuses(c, n: int) -> list[int]:
    pdus = [c.queue(submit()) for _ in range(n)]
    return [(await c.wait_response(p.sequence_number)).command_status for p in pdus]


async def test_max_tps_throttles_above_the_limit(mock_clock):
    # mock clock without autojump: trio time stands still, every submit is in one second
    async with simulator(faulty(max_tps=5)) as srv, esme(srv) as c:
        assert await statuses(c, 8) == [0] * 5 + [S.ESME_RTHROTTLED] * 3
        mock_clock.jump(1.0)  # next one-second window
        assert await statuses(c, 6) == [0] * 5 + [S.ESME_RTHROTTLED]
        assert srv.stats.faults["max_tps"] == 4


async def test_queue_full_all_and_seeded_fraction():
    async with simulator(faulty(queue_full=1.0)) as srv, esme(srv) as c:
        assert await statuses(c, 3) == [S.ESME_RMSGQFUL] * 3
        assert srv.stats.messages_accepted == 0
    runs = []
    for _ in range(2):
        async with simulator(faulty(queue_full=0.5, seed=3)) as srv, esme(srv) as c:
            runs.append(await statuses(c, 30))
    assert runs[0] == runs[1]
    assert 5 < runs[0].count(S.ESME_RMSGQFUL) < 25 and runs[0].count(0) > 5


async def test_drop_after_closes_the_connection():
    async with simulator(faulty(drop_after=3)) as srv, esme(srv) as c:
        pdus = [c.queue(submit()) for _ in range(5)]
        await c.flush()
        with trio.fail_after(3):
            await c.closed.wait()
        answered = [
            e.pdu
            for e in c.events
            if isinstance(e, ResponseReceived) and e.pdu.command_id == CommandId.SUBMIT_SM_RESP
        ]
        assert [p.sequence_number for p in answered] == [p.sequence_number for p in pdus[:3]]
        assert not c.unbound_by_peer  # no unbind: the TCP connection just went away
        assert srv.stats.faults["drop_after"] == 1


async def test_never_answer():
    async with simulator(faulty(never_answer=1.0)) as srv, esme(srv) as c:
        with pytest.raises(trio.TooSlowError):
            await c.request(submit(), timeout=0.3)
        assert srv.stats.submit_sm == 1 and srv.stats.faults["never_answer"] == 1
        assert c.pending_deliveries() == []


async def test_slow_answer_delays_the_resp(mock_clock):
    mock_clock.autojump_threshold = 0.05
    async with simulator(faulty(slow_answer=5.0)) as srv, esme(srv) as c:
        t0 = trio.current_time()
        pdu = c.queue(submit())
        await c.flush()
        receipt = await c.next_delivery(timeout=20)  # immediate receipt overtakes the resp
        resp = await c.wait_response(pdu.sequence_number, timeout=20)
        assert trio.current_time() - t0 >= 5.0
        assert resp.command_status == 0
        assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id


@pytest.mark.parametrize("status", ["ESME_RTHROTTLED", "ESME_RSYSERR"])
async def test_generic_nack(status):
    async with (
        simulator(faulty(generic_nack=1.0, generic_nack_status=status)) as srv,
        esme(srv) as c,
    ):
        resp = await c.request(submit())
        assert resp.command_id == CommandId.GENERIC_NACK
        assert resp.command_status == S[status]


async def test_unbind_on_submit():
    async with simulator(faulty(unbind_on_submit=2)) as srv, esme(srv) as c:
        assert await statuses(c, 2) == [0, 0]
        with trio.fail_after(3):
            await c.closed.wait()
        assert c.unbound_by_peer
        assert srv.stats.unbinds_sent == 1 and srv.stats.faults["unbind_on_submit"] == 1


async def test_receipt_before_resp_same_write():
    async with simulator(faulty(receipt_before_resp=1.0)) as srv, esme(srv) as c:
        resp = await c.request(submit())
        kinds = [type(e) for e in c.events[1:]]  # after the bind response
        assert kinds[:2] == [RequestReceived, ResponseReceived]
        assert c.events[1].pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id


async def test_duplicate_receipts():
    async with simulator(faulty(duplicate_receipts=1.0)) as srv, esme(srv) as c:
        resp = await c.request(submit())
        a, b = await c.deliveries_n(2)
        assert a.tlv(Tag.RECEIPTED_MESSAGE_ID) == b.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id
        assert a.sequence_number != b.sequence_number
        await wait_for(lambda: srv.stats.receipts_acked == 2)


async def test_malformed_pdu_missing_nul_every_nth():
    async with simulator(faulty(malformed_pdu=2)) as srv, esme(srv) as c:
        await statuses(c, 4)
        await wait_for(lambda: sum(isinstance(e, InvalidPdu) for e in c.events) == 2)
        bad = [e for e in c.events if isinstance(e, InvalidPdu)]
        assert not any(e.fatal for e in bad)
        assert bad[0].error.command_id == CommandId.DELIVER_SM
        # our session answered each with an error; the simulator sees them as unexpected
        await wait_for(lambda: srv.stats.unexpected_responses == 2)
        assert srv.stats.faults["malformed_pdu"] == 2
        assert (await c.request(submit())).command_status == 0  # the bind carries on


async def test_malformed_pdu_bad_length_is_fatal_for_the_peer():
    async with (
        simulator(faulty(malformed_pdu=1, malformed_kind="bad_length")) as srv,
        esme(srv) as c,
    ):
        await statuses(c, 1)
        await wait_for(lambda: any(isinstance(e, InvalidPdu) and e.fatal for e in c.events))


async def test_faults_switch_at_runtime_and_reseed():
    async with simulator() as srv, esme(srv) as c:
        assert await statuses(c, 2) == [0, 0]
        srv.set_faults("test", Faults(queue_full=1.0))
        assert await statuses(c, 2) == [S.ESME_RMSGQFUL] * 2
        srv.set_faults("test", Faults())
        assert await statuses(c, 1) == [0]


async def test_fault_counts_are_per_connection():
    async with simulator(faulty(unbind_on_submit=1)) as srv:
        for _ in range(2):
            async with esme(srv) as c:
                await statuses(c, 1)
                await wait_for(lambda c=c: c.unbound_by_peer)
        assert srv.stats.faults["unbind_on_submit"] == 2
        assert not any(isinstance(e, Unbound) and not e.by_peer for e in c.events)

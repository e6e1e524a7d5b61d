"""Our ESME driver against the bundled simulator, once per fault personality: the session
survives, every request gets exactly one outcome, and clean traffic flows afterwards."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest
import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus
from gateway.smpp.esme import EsmeClient, EsmeSettings, Outcome
from gateway.smpp.receipt import receipt_from_pdu
from simulators.smsc.config import Faults
from tests.sim_helpers import account, make_config, simulator, wait_for

N = 40


def submit_sm(i: int) -> P.Pdu:
    return P.SubmitSm(
        source_addr="Acme",
        destination_addr=f"49151{i:07d}",
        short_message=b"fault test",
        registered_delivery=1,
    )


# personality -> (fault settings, outcomes that may appear while it is active)
PERSONALITIES = {
    "max_tps": (dict(max_tps=10), {Outcome.ACCEPTED, Outcome.RETRY}),
    "queue_full": (dict(queue_full=0.5), {Outcome.ACCEPTED, Outcome.RETRY}),
    "drop_after": (dict(drop_after=5), {Outcome.ACCEPTED, Outcome.DISCONNECTED}),
    "never_answer": (dict(never_answer=1.0), {Outcome.TIMEOUT}),
    "slow_answer": (dict(slow_answer=0.2), {Outcome.ACCEPTED}),
    "slow_beyond_timeout": (dict(slow_answer=2.0), {Outcome.TIMEOUT}),
    "generic_nack": (dict(generic_nack=1.0), {Outcome.RETRY}),
    "unbind_on_submit": (
        dict(unbind_on_submit=3),
        {Outcome.ACCEPTED, Outcome.DISCONNECTED, Outcome.NOT_SENT},
    ),
    "receipt_before_resp": (dict(receipt_before_resp=1.0), {Outcome.ACCEPTED}),
    "duplicate_receipts": (dict(duplicate_receipts=1.0), {Outcome.ACCEPTED}),
    "malformed_pdu": (dict(malformed_pdu=4), {Outcome.ACCEPTED}),
}


@pytest.mark.parametrize("name", list(PERSONALITIES))
async def test_session_survives_fault(name, nursery):
    fault_kw, allowed = PERSONALITIES[name]
    cfg = make_config([account(faults=fault_kw)])
    receipts: list[P.Pdu] = []

    async def on_deliver(pdus: list[P.Pdu]) -> list[int]:
        receipts.extend(pdus)
        return [CommandStatus.ESME_ROK] * len(pdus)

    async with simulator(cfg) as srv:
        client = EsmeClient(
            EsmeSettings(
                port=srv.port,
                system_id="test",
                password="secret",
                window=8,
                response_timeout=0.5,
                reconnect_min=0.05,
                reconnect_max=0.2,
            ),
            on_deliver=on_deliver,
        )
        nursery.start_soon(client.run)
        results = []

        async def one(i: int) -> None:
            results.append(await client.submit(submit_sm(i)))

        with trio.fail_after(15):
            async with trio.open_nursery() as n:
                for i in range(N):
                    n.start_soon(one, i)
        # every request got exactly one outcome, and only the ones this fault explains
        assert len(results) == N
        seen = Counter(r.outcome for r in results)
        assert set(seen) <= allowed, seen
        if name in ("max_tps", "queue_full"):
            assert seen[Outcome.RETRY] and all(
                r.throttled for r in results if r.outcome is Outcome.RETRY
            )
        if name == "drop_after":
            assert client.stats.disconnects >= 1
        if name == "receipt_before_resp":
            await wait_for(lambda: len(receipts) == N)
        if name == "duplicate_receipts":
            await wait_for(lambda: len(receipts) == 2 * N)
            ids = Counter(receipt_from_pdu(p).message_id for p in receipts)
            assert set(ids.values()) == {2}
        if name == "malformed_pdu":
            await wait_for(lambda: client.stats.invalid_pdus >= N // 4)

        # the personality switched off, clean traffic flows on the same client
        srv.set_faults("test", Faults())
        with trio.fail_after(10):
            after = await client.submit(submit_sm(999))
            while after.outcome is not Outcome.ACCEPTED:  # e.g. a slow resp still draining
                after = await client.submit(submit_sm(999))
        assert after.outcome is Outcome.ACCEPTED
        assert client.bound
        await client.close()


async def test_receipts_match_their_submits_across_segments(nursery):
    """Per-segment receipts: every accepted submit gets exactly one receipt naming its id."""
    cfg = make_config([account()])
    receipts: list[P.Pdu] = []

    async def on_deliver(pdus: list[P.Pdu]) -> list[int]:
        receipts.extend(pdus)
        return [CommandStatus.ESME_ROK] * len(pdus)

    async with simulator(cfg) as srv:
        client = EsmeClient(
            EsmeSettings(port=srv.port, system_id="test", password="secret", window=16),
            on_deliver=on_deliver,
        )
        nursery.start_soon(client.run)
        with trio.fail_after(10):
            results = [await client.submit(submit_sm(i)) for i in range(20)]
            await wait_for(lambda: len(receipts) == 20)
        sent_ids = {r.message_id for r in results}
        got_ids = {receipt_from_pdu(p).message_id for p in receipts}
        assert sent_ids == got_ids
        assert msgspec.structs.asdict(client.stats)["invalid_pdus"] == 0
        await client.close()

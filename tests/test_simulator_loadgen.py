"""The load generator against the simulator (small, bounded runs)."""

from __future__ import annotations

from simulators.loadgen import run_load
from tests.sim_helpers import account, make_config, simulator


async def test_loadgen_counts_resps_and_receipts():
    async with simulator(make_config([account("load", "pw")])) as srv:
        result = await run_load(
            "127.0.0.1", srv.port, "load", "pw", binds=3, window=16, count=3000, duration=20
        )
    assert result.complete
    assert (result.submitted, result.accepted, result.receipts) == (3000, 3000, 3000)
    assert result.responses == {"ESME_ROK": 3000}
    assert result.submit_rate > 0 and set(result.latency_ms) == {"p50", "p90", "p99", "max"}
    assert srv.stats.receipts_acked == 3000
    assert "msg/s" in result.line()


async def test_loadgen_counts_refusals_and_is_bounded_by_duration():
    cfg = make_config([account("load", "pw", faults={"queue_full": 0.5, "seed": 1})])
    async with simulator(cfg) as srv:
        result = await run_load(
            "127.0.0.1",
            srv.port,
            "load",
            "pw",
            binds=1,
            window=8,
            count=10**9,
            duration=0.3,
            drain_timeout=2,
            bind_type="transmitter",
        )
    assert result.complete  # stopped submitting at the deadline, then drained
    assert result.submitted > 0 and result.submitted == sum(result.responses.values())
    assert set(result.responses) == {"ESME_ROK", "ESME_RMSGQFUL"}
    assert result.receipts == 0  # transmitter binds get none; held by the simulator
    assert srv.snapshot()["receipts_held"] == result.accepted

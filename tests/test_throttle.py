"""Token buckets, AIMD back-off and tenant limits, on trio's MockClock (simulated time)."""

from __future__ import annotations

import itertools
import math

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import TenantConfig, hash_api_key
from gateway.errors import Forbidden, GatewayError, QuotaExceeded, RateLimited
from gateway.throttle import AdaptiveRate, TenantLimiter, TokenBucket, utc_day

# ---------------------------------------------------------------------------------------
# TokenBucket: synchronous API


def test_starts_full_and_refills():
    b = TokenBucket(10, 5, now=100.0)
    assert b.tokens(100.0) == pytest.approx(5)
    assert all(b.try_take(1, 100.0) for _ in range(5))
    assert not b.try_take(1, 100.0)
    assert b.wait_time(1, 100.0) == pytest.approx(0.1)
    assert b.wait_time(3, 100.0) == pytest.approx(0.3)
    assert b.try_take(1, 100.1)
    assert b.tokens(100.1) == pytest.approx(0, abs=1e-9)
    # refill is capped at the depth
    assert b.tokens(1000.0) == 5


def test_empty_start():
    b = TokenBucket(10, 5, now=0.0, full=False)
    assert not b.try_take(1, 0.0)
    assert b.wait_time(1, 0.0) == pytest.approx(0.1)


def test_exact_instants_despite_float_rounding():
    b = TokenBucket(10, 1, now=0.0, full=False)
    # 0.1 + 0.1 + 0.1 != 0.3 in floats; the bucket must still grant at 0.3
    for i in range(1, 1001):
        assert b.try_take(1, i / 10), i
        assert not b.try_take(1, i / 10)


def test_wait_time_zero_when_available():
    b = TokenBucket(100, 10, now=0.0)
    assert b.wait_time(10, 0.0) == 0.0
    assert b.wait_time(1, 0.0) == 0.0


def test_oversized_take_goes_into_debt():
    b = TokenBucket(10, 5, now=0.0)
    assert b.wait_time(20, 0.0) == 0.0  # a full bucket admits any count
    assert b.try_take(20, 0.0)
    assert b.tokens(0.0) == pytest.approx(-15)
    # the debt is paid at the configured rate: 1 token again after 1.6 s
    assert b.wait_time(1, 0.0) == pytest.approx(1.6)
    assert not b.try_take(1, 1.5)
    assert b.try_take(1, 1.6)


def test_oversized_take_waits_for_full_bucket():
    b = TokenBucket(10, 5, now=0.0)
    assert b.try_take(3, 0.0)
    assert not b.try_take(20, 0.0)
    assert b.wait_time(20, 0.0) == pytest.approx(0.3)


@pytest.mark.parametrize("rate,depth", [(0, 1), (-1, 1), (1, 0), (math.inf, 1), (1, math.nan)])
def test_invalid_parameters(rate, depth):
    with pytest.raises(ValueError):
        TokenBucket(rate, depth, 0.0)


def test_invalid_count():
    b = TokenBucket(1, 1, 0.0)
    with pytest.raises(ValueError):
        b.try_take(0, 0.0)


def test_retune_keeps_tokens_clamped_to_new_depth():
    b = TokenBucket(100, 100, now=0.0)
    b.retune(10, 10, now=0.0)
    assert b.tokens(0.0) == pytest.approx(10)
    assert (b.rate, b.depth) == (10, 10)

    b = TokenBucket(10, 10, now=0.0)
    for _ in range(5):
        assert b.try_take(1, 0.0)
    b.retune(20, 100, now=0.0)  # 5 tokens kept, not refilled to the new depth
    assert b.tokens(0.0) == pytest.approx(5)
    assert b.tokens(1.0) == pytest.approx(25)  # refilled at the new rate


def test_retune_keeps_debt():
    b = TokenBucket(10, 5, now=0.0)
    assert b.try_take(25, 0.0)  # -20
    b.retune(100, 5, now=0.0)
    assert b.tokens(0.0) == pytest.approx(-20)
    assert b.wait_time(1, 0.0) == pytest.approx(0.21)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 5000),
    depth=st.floats(1, 500),
    steps=st.lists(st.tuples(st.floats(0, 0.5), st.integers(1, 20)), min_size=1, max_size=200),
)
def test_never_exceeds_depth_plus_rate_times_interval(rate, depth, steps):
    """For any sequence of try_take calls, grants in [t0, t1] <= depth + rate * (t1 - t0)
    (counts <= depth; the oversized-debt case is covered separately)."""
    b = TokenBucket(rate, depth, now=0.0)
    now = 0.0
    grants: list[tuple[float, int]] = []
    for dt, n in steps:
        now += dt
        n = min(n, int(depth))
        if n >= 1 and b.try_take(n, now):
            grants.append((now, n))
    for i in range(len(grants)):
        total = 0
        for j in range(i, len(grants)):
            total += grants[j][1]
            span = grants[j][0] - grants[i][0]
            assert total <= depth + rate * span + 1e-6


# ---------------------------------------------------------------------------------------
# TokenBucket.take() on simulated time


async def _take_n(bucket: TokenBucket, n: int, takers: int = 1) -> list[float]:
    """Take n tokens with `takers` concurrent tasks; returns the grant times."""
    times: list[float] = []
    per, extra = divmod(n, takers)

    async def taker(k: int) -> None:
        for _ in range(k):
            await bucket.take()
            times.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for i in range(takers):
            nursery.start_soon(taker, per + (1 if i < extra else 0))
    return times


@pytest.mark.parametrize("rate", [10, 100, 1000, 5000])
@pytest.mark.parametrize("takers", [1, 8])
async def test_rate_accuracy(autojump_clock, rate, takers):
    depth = max(1.0, rate / 10)
    n = int(depth) + min(rate * 3, 6000)
    start = trio.current_time()
    bucket = TokenBucket(rate, depth, start)
    times = await _take_n(bucket, n, takers)
    elapsed = max(times) - start
    expected = (n - depth) / rate
    assert elapsed == pytest.approx(expected, rel=0.01)
    assert elapsed == pytest.approx(expected, rel=1e-6)  # on simulated time: exact


@pytest.mark.parametrize("rate,depth", [(10, 1), (100, 10), (1000, 100), (1000, 1)])
async def test_burst_depth_honoured(autojump_clock, rate, depth):
    start = trio.current_time()
    bucket = TokenBucket(rate, depth, start)
    times = await _take_n(bucket, depth + 5)
    assert sum(1 for t in times if t == start) == depth
    # after the burst: one token per 1/rate
    tail = times[depth - 1 :]
    for a, b in itertools.pairwise(tail):
        assert b - a == pytest.approx(1 / rate)
    # idle refills the bucket to its depth, not beyond
    await trio.sleep(100)
    now = trio.current_time()
    times = await _take_n(bucket, depth + 1)
    assert sum(1 for t in times if t == now) == depth


async def test_no_drift_from_late_wakeups(autojump_clock):
    """Wake-ups that come late (as on a real event loop) must not be lost to the depth
    cap: a depth-1 bucket still delivers exactly its rate."""

    async def jitter() -> None:  # every ~1 ms, the "event loop" stalls for 0.9 ms
        while True:
            await trio.sleep(0.001)
            autojump_clock.jump(0.0009)

    rate, n = 100, 501
    async with trio.open_nursery() as nursery:
        nursery.start_soon(jitter)
        start = trio.current_time()
        bucket = TokenBucket(rate, 1, start)
        times = await _take_n(bucket, n)
        nursery.cancel_scope.cancel()
    late = sum(1 for i, t in enumerate(times) if t > start + i / rate + 1e-9)
    assert late > n / 4  # the jitter did delay wake-ups
    assert max(times) - start == pytest.approx((n - 1) / rate, abs=0.001)


async def test_stall_catch_up_is_bounded(autojump_clock):
    """After the loop stalls for 2 s, queued waiters may catch up at most about one
    bucket's worth at once, not 2 s of tokens."""
    rate, depth = 100, 10
    bucket = TokenBucket(rate, depth, trio.current_time())
    times: list[float] = []

    async def taker() -> None:
        while True:
            await bucket.take()
            times.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(taker)
        await trio.sleep(1.0)
        autojump_clock.jump(2.0)  # nobody runs for 2 s
        stalled_until = trio.current_time()
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    burst = sum(1 for t in times if t == stalled_until)
    assert depth <= burst <= 2 * depth + 1
    # and then the normal rate again
    after = [t for t in times if t > stalled_until]
    for a, b in itertools.pairwise(after):
        assert b - a == pytest.approx(1 / rate)


async def test_fifo_fairness_and_no_shared_gap(autojump_clock):
    rate, takers, rounds = 10, 4, 15
    bucket = TokenBucket(rate, 1, trio.current_time())
    grants: list[tuple[float, int]] = []

    async def taker(i: int) -> None:
        for _ in range(rounds):
            await bucket.take()
            grants.append((trio.current_time(), i))

    async with trio.open_nursery() as nursery:
        for i in range(takers):
            nursery.start_soon(taker, i)
    times = [t for t, _ in grants]
    # one grant per 1/rate: no two waiters woke for the same gap and burst
    for a, b in itertools.pairwise(times):
        assert b - a == pytest.approx(1 / rate)
    # round robin in arrival order once every taker is queued
    order = [i for _, i in grants]
    for k in range(takers, len(order) - takers):
        assert sorted(order[k : k + takers]) == list(range(takers)), order


async def test_fifo_big_request_not_starved(autojump_clock):
    """A waiter wanting many tokens is not overtaken by later small requests."""
    bucket = TokenBucket(10, 5, trio.current_time())
    for _ in range(5):
        await bucket.take()
    order: list[str] = []

    async def big() -> None:
        await bucket.take(5)
        order.append("big")

    async def small(name: str, delay: float) -> None:
        await trio.sleep(delay)  # arrives after big
        await bucket.take(1)
        order.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(big)
        nursery.start_soon(small, "s1", 0.01)
        nursery.start_soon(small, "s2", 0.02)
    assert order == ["big", "s1", "s2"]
    assert trio.current_time() == pytest.approx(0.7)


async def test_try_take_does_not_jump_the_queue(autojump_clock):
    bucket = TokenBucket(10, 1, trio.current_time(), full=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bucket.take)
        await trio.sleep(0.05)
        assert bucket.waiting
        assert not bucket.try_take(1, trio.current_time() + 1)
    assert not bucket.waiting


async def test_cancelled_waiter_takes_nothing(autojump_clock):
    bucket = TokenBucket(10, 1, trio.current_time(), full=False)
    with trio.move_on_after(0.05):
        await bucket.take()
    # the token the cancelled waiter wanted is still there at 0.1
    await bucket.take()
    assert trio.current_time() == pytest.approx(0.1)


async def test_take_is_a_checkpoint_even_when_available(autojump_clock):
    bucket = TokenBucket(10, 5, trio.current_time())
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await bucket.take()
    assert bucket.tokens(trio.current_time()) == pytest.approx(5)


async def test_retune_mid_run(autojump_clock):
    start = trio.current_time()
    bucket = TokenBucket(100, 10, start)
    count = 0

    async def taker() -> None:
        nonlocal count
        while True:
            await bucket.take()
            count += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(taker)
        await trio.sleep(1.0)
        assert count == pytest.approx(10 + 100, abs=1)
        bucket.retune(1000, 100, trio.current_time())
        await trio.sleep(1.0)
        assert count == pytest.approx(10 + 100 + 1000, abs=2)
        bucket.retune(10, 1, trio.current_time())
        await trio.sleep(1.0)
        assert count == pytest.approx(10 + 100 + 1000 + 10, abs=2)
        nursery.cancel_scope.cancel()


async def test_retune_wakes_sleeping_waiter(autojump_clock):
    start = trio.current_time()
    bucket = TokenBucket(1, 1, start, full=False)  # next token at +1 s
    done_at: list[float] = []

    async def waiter() -> None:
        await bucket.take()
        done_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(0.1)  # 0.1 tokens accumulated
        bucket.retune(100, 1, trio.current_time())
    # the remaining 0.9 tokens at 100/s: 9 ms, not the 0.9 s of the old rate
    assert done_at[0] - start == pytest.approx(0.109)


async def test_retune_slower_makes_waiter_wait_longer(autojump_clock):
    start = trio.current_time()
    bucket = TokenBucket(10, 1, start, full=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bucket.take)
        await trio.sleep(0.05)  # 0.5 tokens
        bucket.retune(1, 1, trio.current_time())
    assert trio.current_time() - start == pytest.approx(0.55)


# ---------------------------------------------------------------------------------------
# AdaptiveRate (AIMD)


def test_aimd_halves_once_per_window():
    b = TokenBucket(100, 10, 0.0)
    a = AdaptiveRate(b, 0.0)
    # a window's worth of in-flight messages all answered "throttled"
    results = [a.on_throttled(0.5 + i / 1000) for i in range(64)]
    assert results.count(True) == 1
    assert a.effective_rate == 50 and b.rate == 50
    assert a.decreases == 1
    assert a.on_throttled(1.4) is False
    assert a.on_throttled(1.5) is True  # next window
    assert a.effective_rate == 25
    assert a.backing_off


def test_aimd_scales_depth_and_floor():
    b = TokenBucket(100, 10, 0.0)
    a = AdaptiveRate(b, 0.0, min_rate=1.0)
    a.on_throttled(0.0)
    assert b.depth == pytest.approx(5)
    for i in range(1, 20):
        a.on_throttled(float(i))
    assert a.effective_rate == 1.0 and b.rate == 1.0
    assert b.depth == 1.0  # never below 1
    assert a.on_throttled(100.0) is False  # already at the floor


def test_aimd_min_fraction_floor():
    a = AdaptiveRate(TokenBucket(1000, 100, 0.0), 0.0, min_rate=1.0, min_fraction=0.1)
    for i in range(20):
        a.on_throttled(float(i))
    assert a.floor == 100
    assert a.effective_rate == 100


def test_aimd_floor_never_above_configured():
    a = AdaptiveRate(TokenBucket(0.5, 1, 0.0), 0.0, min_rate=1.0)
    assert a.floor == 0.5
    assert a.on_throttled(0.0) is False
    assert a.effective_rate == 0.5


def test_aimd_recovers_additively_up_to_configured():
    b = TokenBucket(100, 10, 0.0)
    a = AdaptiveRate(b, 0.0, recovery=0.1)
    a.on_throttled(10.0)
    assert a.effective_rate == 50
    a.on_success(10.05)  # below the step: nothing yet
    assert a.effective_rate == 50
    a.on_success(11.0)
    assert a.effective_rate == pytest.approx(60)
    # steady successes every 10 ms for 2 s: +20
    t = 11.0
    for _ in range(200):
        t += 0.01
        a.on_success(t)
    assert a.effective_rate == pytest.approx(80, abs=0.5)
    assert b.rate == a.effective_rate
    a.on_success(t + 10)
    assert a.effective_rate == 100 and b.rate == 100 and b.depth == 10
    assert not a.backing_off


def test_aimd_throttle_restarts_recovery():
    a = AdaptiveRate(TokenBucket(100, 10, 0.0), 0.0)
    a.on_throttled(0.0)  # 50
    a.on_success(2.0)  # 70
    assert a.effective_rate == pytest.approx(70)
    a.on_throttled(2.5)  # 35
    assert a.effective_rate == pytest.approx(35)
    a.on_success(3.5)  # +10 from 2.5, not from 2.0
    assert a.effective_rate == pytest.approx(45)


def test_aimd_configure_in_place():
    b = TokenBucket(100, 10, 0.0)
    a = AdaptiveRate(b, 0.0)
    a.configure(200, 20, 1.0)  # at full speed: applies at once
    assert a.effective_rate == 200 and b.rate == 200 and b.depth == 20
    a.on_throttled(2.0)  # 100
    a.configure(400, 40, 2.0)  # backing off: stays, recovers towards 400
    assert a.configured_rate == 400 and a.effective_rate == 100
    a.on_success(3.0)
    assert a.effective_rate == pytest.approx(140)
    a.configure(50, 5, 3.0)  # lower than the effective rate: drops to it
    assert a.effective_rate == 50 and b.rate == 50 and b.depth == 5
    assert not a.backing_off


async def test_aimd_bucket_delivers_effective_rate(autojump_clock):
    start = trio.current_time()
    a = AdaptiveRate(TokenBucket(1000, 100, start), start)
    a.on_throttled(start)
    assert a.effective_rate == 500
    times = await _take_n(a.bucket, 50 + 1000)  # depth scaled to 50
    assert max(times) - start == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------
# TenantLimiter

DAY = 86_400
T0 = 20_000 * DAY + 3600.0  # a wall clock at 01:00 UTC


def tenant(tid: str = "acme", tps: float = 10, quota: int = 1000) -> TenantConfig:
    return TenantConfig(id=tid, api_key_hash=hash_api_key("k"), tps=tps, daily_quota=quota)


def test_tenant_rate_refused_with_retry_after():
    lim = TenantLimiter([tenant(tps=10)], now=0.0)
    for _ in range(10):  # one second's burst
        lim.check_and_take("acme", 1, 0.0, T0)
    with pytest.raises(RateLimited) as e:
        lim.check_and_take("acme", 1, 0.0, T0)
    err = e.value
    assert type(err) is RateLimited and isinstance(err, GatewayError)
    assert err.http_status == 429 and err.code == "rate_limited"
    assert err.retry_after == pytest.approx(0.1) and err.details["retry_after"] == err.retry_after
    assert err.details["tenant"] == "acme"
    assert lim.used_today("acme", T0) == 10  # the refused one is not counted
    lim.check_and_take("acme", 1, 0.1, T0)
    assert lim.used_today("acme", T0) == 11


def test_tenant_retry_after_is_never_zero():
    lim = TenantLimiter([tenant(tps=1e6)], now=0.0, burst_seconds=1e-6)
    lim.check_and_take("acme", 1, 0.0, T0)
    with pytest.raises(RateLimited) as e:
        lim.check_and_take("acme", 1, 0.0, T0)
    assert e.value.retry_after == 0.001


def test_tenant_batch_all_or_nothing_quota():
    lim = TenantLimiter([tenant(tps=1000, quota=100)], now=0.0)
    lim.check_and_take("acme", 50, 0.0, T0)
    with pytest.raises(QuotaExceeded) as e:
        lim.check_and_take("acme", 51, 0.0, T0)
    err = e.value
    assert err.code == "quota_exceeded" and err.http_status == 429
    assert err.details["used_today"] == 50 and err.details["requested"] == 51
    assert err.retry_after == pytest.approx(DAY - 3600)  # until midnight UTC
    assert lim.used_today("acme", T0) == 50  # nothing consumed
    lim.check_and_take("acme", 50, 0.0, T0)  # tokens were not consumed either
    assert lim.remaining_today("acme", T0) == 0
    with pytest.raises(QuotaExceeded):
        lim.check_and_take("acme", 1, 0.0, T0)


def test_tenant_batch_all_or_nothing_rate():
    lim = TenantLimiter([tenant(tps=10, quota=1000)], now=0.0)
    lim.check_and_take("acme", 6, 0.0, T0)
    with pytest.raises(RateLimited) as e:
        lim.check_and_take("acme", 5, 0.0, T0)  # 4 tokens left: refused whole
    assert e.value.retry_after == pytest.approx(0.1)
    assert lim.used_today("acme", T0) == 6
    lim.check_and_take("acme", 4, 0.0, T0)


def test_tenant_large_batch_takes_full_bucket_then_debt():
    lim = TenantLimiter([tenant(tps=10, quota=10_000)], now=0.0)
    lim.check_and_take("acme", 100, 0.0, T0)  # full bucket admits a big batch
    with pytest.raises(RateLimited) as e:
        lim.check_and_take("acme", 1, 0.0, T0)
    assert e.value.retry_after == pytest.approx(9.1)  # 90 in debt + 1 at 10/s
    lim.check_and_take("acme", 1, 9.1, T0)


def test_tenant_quota_checked_before_rate():
    lim = TenantLimiter([tenant(tps=1, quota=1)], now=0.0)
    lim.check_and_take("acme", 1, 0.0, T0)
    with pytest.raises(QuotaExceeded):
        lim.check_and_take("acme", 1, 0.0, T0)


def test_tenant_utc_day_rollover_resets_quota():
    lim = TenantLimiter([tenant(tps=1000, quota=10)], now=0.0)
    end_of_day = 20_001 * DAY - 1.0  # 23:59:59 UTC
    lim.check_and_take("acme", 10, 0.0, end_of_day)
    with pytest.raises(QuotaExceeded) as e:
        lim.check_and_take("acme", 1, 0.5, end_of_day + 0.5)
    assert e.value.retry_after == pytest.approx(0.5)
    lim.check_and_take("acme", 10, 1.0, end_of_day + 1.0)  # 00:00:00 next day
    assert lim.used_today("acme", end_of_day + 1.0) == 10
    assert lim.used_today("acme", end_of_day + 1.0 + DAY) == 0
    # a wall clock stepping back into yesterday does not reset again
    with pytest.raises(QuotaExceeded):
        lim.check_and_take("acme", 1, 2.0, end_of_day)


def test_tenant_zero_quota_refuses_everything():
    lim = TenantLimiter([tenant(quota=0)], now=0.0)
    with pytest.raises(QuotaExceeded):
        lim.check_and_take("acme", 1, 0.0, T0)


def test_tenant_refund():
    lim = TenantLimiter([tenant(tps=1000, quota=100)], now=0.0)
    lim.check_and_take("acme", 100, 0.0, T0)
    lim.refund("acme", 30, T0)
    assert lim.used_today("acme", T0) == 70
    lim.check_and_take("acme", 30, 1.0, T0)
    lim.refund("acme", 500, T0)  # never below zero
    assert lim.used_today("acme", T0) == 0
    lim.check_and_take("acme", 5, 2.0, T0)
    lim.refund("acme", 5, T0 - DAY)  # yesterday's refund: nothing to give back today
    assert lim.used_today("acme", T0) == 5
    lim.refund("nobody", 5, T0)  # unknown tenant: no-op


def test_tenant_restore_at_startup():
    lim = TenantLimiter([tenant(tps=1000, quota=100)], now=0.0)
    lim.restore("acme", 95, T0)
    assert lim.remaining_today("acme", T0) == 5
    with pytest.raises(QuotaExceeded):
        lim.check_and_take("acme", 6, 0.0, T0)
    lim.check_and_take("acme", 5, 0.0, T0)
    # restored yesterday's count does not count today
    lim.restore("acme", 95, T0 - DAY)
    assert lim.used_today("acme", T0) == 0


def test_tenant_retune_keeps_usage_and_tokens():
    lim = TenantLimiter([tenant("a", tps=10, quota=100), tenant("b", tps=5)], now=0.0)
    lim.check_and_take("a", 8, 0.0, T0)  # 2 tokens left, 8 used
    lim.retune([tenant("a", tps=100, quota=50), tenant("c", tps=1)], now=0.0)
    assert lim.used_today("a", T0) == 8
    with pytest.raises(RateLimited):  # tokens kept (2), not refilled to the new depth
        lim.check_and_take("a", 3, 0.0, T0)
    lim.check_and_take("a", 2, 0.0, T0)
    lim.check_and_take("a", 40, 1.0, T0)  # new rate and quota apply
    with pytest.raises(QuotaExceeded):
        lim.check_and_take("a", 1, 2.0, T0)
    with pytest.raises(Forbidden):  # removed
        lim.check_and_take("b", 1, 0.0, T0)
    assert "c" in lim and "b" not in lim
    lim.check_and_take("c", 1, 0.0, T0)


def test_tenant_removed_and_added_back_keeps_usage():
    lim = TenantLimiter([tenant(quota=10)], now=0.0)
    lim.check_and_take("acme", 10, 0.0, T0)
    lim.retune([], now=1.0)
    lim.retune([tenant(quota=10)], now=2.0)
    with pytest.raises(QuotaExceeded):
        lim.check_and_take("acme", 1, 3.0, T0)


def test_tenant_unknown_and_bad_count():
    lim = TenantLimiter([tenant()], now=0.0)
    with pytest.raises(Forbidden):
        lim.check_and_take("nobody", 1, 0.0, T0)
    with pytest.raises(ValueError):
        lim.check_and_take("acme", 0, 0.0, T0)


def test_utc_day():
    assert utc_day(0) == 0
    assert utc_day(DAY - 0.001) == 0
    assert utc_day(DAY) == 1

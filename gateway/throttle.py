"""Rate limiting: token buckets, adaptive back-off on ESME_RTHROTTLED, tenant limits.

Theory of operation
-------------------

`TokenBucket` is kept as a single timestamp, `base`: the instant at which the bucket would
have been empty had nothing been capped. The tokens available at time `t` are
``min(depth, (t - base) * rate)``; taking `n` tokens moves `base` forward by ``n / rate``.
(This is the GCRA formulation of a token bucket.) Because the state is a point on the
clock rather than a running float count, the schedule of grants is absolute: a taker that
wakes up late does not push every later grant back, so errors do not accumulate over long
runs.

`take()` serves waiters first come, first served through a `trio.Lock` (trio's lock is
fair: it is handed to the longest waiter). Only the head of the queue sleeps, and it
sleeps until the exact instant its tokens are there; the next waiter then computes its own
instant from the new `base`. Two waiters therefore never sleep through the same gap and
then burst together.

A waiter that slept is charged at the instant it was due, not at the instant the scheduler
got round to waking it ("logical time"). Otherwise, with a shallow bucket (depth 1 at
10 TPS), each wake-up latency would be lost to the depth cap and the achieved rate would
sag. The catch-up this allows is bounded: a grant is never charged earlier than the
taker's arrival, the last retune, or ``depth / rate`` before now, so a stalled event loop
can release at most about one extra bucket's worth when it resumes.

A count larger than the depth is granted once the bucket is full and leaves the bucket in
debt (negative tokens), so big batches are possible and the long-run rate stays exact.

`AdaptiveRate` puts AIMD on top of a channel's bucket: throttle signals from the SMSC halve
the effective rate (at most once per window), quiet time brings it back additively.

`TenantLimiter` holds the per-tenant decisions: a TPS bucket (over-rate requests are
refused with a retry-after, never queued) and a messages-per-UTC-day quota. All of it is
pure: the caller passes the monotonic time (`now`) and the wall clock (`wall_time`, Unix
seconds) in.

Nothing here does I/O; the only trio use is `TokenBucket.take()` sleeping on trio's clock,
so tests drive it with `trio.testing.MockClock`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import trio

from gateway.config import TenantConfig
from gateway.errors import Forbidden, QuotaExceeded, RateLimited

__all__ = ["AdaptiveRate", "TenantLimiter", "TokenBucket", "utc_day"]

# Tolerance for comparing clock instants: keeps e.g. 0.1 + 0.1 + 0.1 from being "not yet
# 0.3". A nanosecond early is harmless.
_EPS = 1e-9

SECONDS_PER_DAY = 86_400


def utc_day(wall_time: float) -> int:
    """Days since the Unix epoch, in UTC (Unix time has no leap seconds)."""
    return int(wall_time // SECONDS_PER_DAY)


def _check_rate(rate: float, depth: float) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive finite number, got {rate!r}")
    if not (depth > 0 and math.isfinite(depth)):
        raise ValueError(f"depth must be a positive finite number, got {depth!r}")


class TokenBucket:
    """`rate` tokens per second, at most `depth` stored. Starts full at `now`.

    The synchronous methods take the time as an argument (any monotonic clock, the same
    one throughout); `take()` uses trio's clock (`trio.current_time()`).
    """

    __slots__ = ("_base", "_depth", "_epoch", "_lock", "_rate", "_sleeper")

    def __init__(self, rate: float, depth: float, now: float, *, full: bool = True) -> None:
        _check_rate(rate, depth)
        self._rate = float(rate)
        self._depth = float(depth)
        self._base = now - self._depth / self._rate if full else float(now)
        self._epoch = float(now)  # grants are never charged before this instant
        self._lock = trio.Lock()
        self._sleeper: trio.CancelScope | None = None  # the head waiter's sleep

    # -- inspection ----------------------------------------------------------------

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def depth(self) -> float:
        return self._depth

    @property
    def waiting(self) -> bool:
        """True while some task is inside `take()` (queued or sleeping)."""
        return self._lock.locked()

    def tokens(self, now: float) -> float:
        """Tokens available at `now`; negative while in debt after an oversized take."""
        return min(self._depth, (now - self._base) * self._rate)

    def _due(self, n: float) -> float:
        """The instant at which `n` tokens (at most a full bucket) are available."""
        return self._base + min(n, self._depth) / self._rate

    def wait_time(self, n: float, now: float) -> float:
        """Seconds until `n` tokens can be taken; 0.0 if they can be taken now.

        Counts larger than the depth become available when the bucket is full.
        """
        w = self._due(n) - now
        return w if w > _EPS else 0.0

    # -- taking ----------------------------------------------------------------------

    def _consume(self, n: float, at: float) -> None:
        # Cap at `at` (a full bucket stores no more), then spend.
        floor = at - self._depth / self._rate
        base = max(floor, self._base)
        self._base = base + n / self._rate

    def try_take(self, n: float, now: float) -> bool:
        """Take `n` tokens if available right now. Never jumps ahead of tasks queued in
        `take()`: while any are waiting this returns False."""
        if n <= 0:
            raise ValueError("n must be positive")
        if self._lock.locked():
            return False
        # _due(n) and _consume(n, now) inlined: called once per message sent.
        rate, depth, base = self._rate, self._depth, self._base
        if base + (n if n < depth else depth) / rate > now + _EPS:
            return False
        floor = now - depth / rate
        self._base = (floor if floor > base else base) + n / rate
        return True

    async def take(self, n: float = 1) -> None:
        """Wait until `n` tokens are available and take them. Waiters are served in
        arrival order. Cancellation while waiting takes nothing."""
        if n <= 0:
            raise ValueError("n must be positive")
        arrival = trio.current_time()
        async with self._lock:
            while True:
                now = trio.current_time()
                due = self._due(n)
                if due <= now + _EPS:
                    # Charge at the logical instant (see the module docstring).
                    at = max(due, arrival, self._epoch, now - self._depth / self._rate)
                    self._consume(n, min(now, at))
                    return
                # Sleep until due; retune() cancels this scope to make us recompute.
                with trio.CancelScope(deadline=due) as scope:
                    self._sleeper = scope
                    try:
                        await trio.sleep_forever()
                    finally:
                        self._sleeper = None

    # -- reconfiguring -------------------------------------------------------------------

    def retune(self, rate: float, depth: float, now: float) -> None:
        """Change rate and depth in place. The tokens held at `now` are kept (clamped to
        the new depth; a debt stays a debt) and a sleeping waiter recomputes its wait."""
        _check_rate(rate, depth)
        tokens = min(self.tokens(now), float(depth))
        self._rate = float(rate)
        self._depth = float(depth)
        self._base = now - tokens / self._rate
        if now > self._epoch:
            self._epoch = float(now)
        if self._sleeper is not None:
            self._sleeper.cancel()

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self._rate:g}, depth={self._depth:g})"


class AdaptiveRate:
    """AIMD control of a channel's bucket from the SMSC's throttle signals.

    - `on_throttled(now)` (ESME_RTHROTTLED, ESME_RMSGQFUL, ...) halves the effective rate,
      at most once per `window` seconds: a window's worth of in-flight messages all
      answered "throttled" counts as one signal. Never below `floor`:
      ``min(configured, max(min_rate, min_fraction * configured))``.
    - `on_success(now)` recovers additively: `recovery` x configured rate per second since
      the last adjustment (default +10 %/s), applied in steps of at least `step` seconds,
      up to the configured rate.
    - `configure(rate, depth, now)` changes the configured rate in place (config reload).

    The bucket's depth is scaled with the effective rate (never below 1), so a halved
    rate does not still allow the full configured burst.
    """

    __slots__ = (
        "_configured",
        "_configured_depth",
        "_effective",
        "_last_adjust",
        "_last_decrease",
        "_min_fraction",
        "_min_rate",
        "_recovery",
        "_step",
        "_window",
        "bucket",
        "decreases",
    )

    def __init__(
        self,
        bucket: TokenBucket,
        now: float,
        *,
        min_rate: float = 1.0,
        min_fraction: float = 0.0,
        window: float = 1.0,
        recovery: float = 0.1,
        step: float = 0.1,
    ) -> None:
        if min_rate <= 0 or not 0 <= min_fraction <= 1 or window < 0 or recovery <= 0:
            raise ValueError("bad AdaptiveRate parameters")
        self.bucket = bucket
        self._configured = bucket.rate
        self._configured_depth = bucket.depth
        self._effective = bucket.rate
        self._min_rate = float(min_rate)
        self._min_fraction = float(min_fraction)
        self._window = float(window)
        self._recovery = float(recovery)
        self._step = float(step)
        self._last_decrease = -math.inf
        self._last_adjust = float(now)
        self.decreases = 0  # how many times the rate was halved (for stats)

    @property
    def configured_rate(self) -> float:
        return self._configured

    @property
    def effective_rate(self) -> float:
        return self._effective

    @property
    def floor(self) -> float:
        return min(self._configured, max(self._min_rate, self._min_fraction * self._configured))

    @property
    def backing_off(self) -> bool:
        return self._effective < self._configured

    def _apply(self, rate: float, now: float) -> None:
        self._effective = rate
        depth = max(1.0, self._configured_depth * rate / self._configured)
        self.bucket.retune(rate, min(depth, self._configured_depth), now)

    def on_throttled(self, now: float) -> bool:
        """A throttle signal from the SMSC. Returns True if the rate was lowered."""
        if now - self._last_decrease < self._window:
            return False
        self._last_decrease = now
        self._last_adjust = now
        new = max(self.floor, self._effective / 2)
        if new >= self._effective:
            return False
        self.decreases += 1
        self._apply(new, now)
        return True

    def on_success(self, now: float) -> None:
        """A message accepted by the SMSC: recover towards the configured rate."""
        if self._effective >= self._configured:
            return
        elapsed = now - self._last_adjust
        if elapsed < self._step:
            return
        self._last_adjust = now
        new = self._effective + self._recovery * self._configured * elapsed
        self._apply(min(self._configured, new), now)

    def configure(self, rate: float, depth: float, now: float) -> None:
        """New configured rate and depth (reload). At full speed the new rate applies at
        once; while backing off the effective rate stays where it is (or drops to the new
        configured rate if that is lower) and recovers towards the new target."""
        _check_rate(rate, depth)
        backing_off = self.backing_off
        self._configured = float(rate)
        self._configured_depth = float(depth)
        eff = min(self._effective, self._configured) if backing_off else self._configured
        self._apply(max(eff, self.floor), now)

    async def take(self, n: float = 1) -> None:
        await self.bucket.take(n)

    def __repr__(self) -> str:
        return f"AdaptiveRate(configured={self._configured:g}, effective={self._effective:g})"


class _Usage:
    __slots__ = ("day", "used")

    def __init__(self, day: int, used: int) -> None:
        self.day = day
        self.used = used


class TenantLimiter:
    """Per-tenant TPS bucket and daily quota. Pure decisions: the clocks are passed in.

    The TPS bucket holds `burst_seconds` worth of the tenant's rate (at least one message).
    A batch larger than that is accepted when the bucket is full and leaves it in debt, so
    batches work and the long-run rate is the configured one.

    Today's usage is kept per tenant id independent of the config, so a reload (or a
    tenant removed and added back) never forgets it.
    """

    def __init__(
        self, tenants: Iterable[TenantConfig], now: float, *, burst_seconds: float = 1.0
    ) -> None:
        if burst_seconds <= 0:
            raise ValueError("burst_seconds must be positive")
        self._burst_seconds = float(burst_seconds)
        self._config: dict[str, TenantConfig] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._usage: dict[str, _Usage] = {}
        self.retune(tenants, now)

    def _depth(self, tps: float) -> float:
        return max(1.0, tps * self._burst_seconds)

    def _tenant(self, tenant_id: str) -> TenantConfig:
        try:
            return self._config[tenant_id]
        except KeyError:
            raise Forbidden(f"unknown tenant {tenant_id!r}", tenant=tenant_id) from None

    def _usage_on(self, tenant_id: str, day: int) -> _Usage:
        u = self._usage.get(tenant_id)
        if u is None:
            u = self._usage[tenant_id] = _Usage(day, 0)
        elif day > u.day:  # a new UTC day (a clock stepping back does not reset)
            u.day, u.used = day, 0
        return u

    def check_and_take(self, tenant_id: str, count: int, now: float, wall_time: float) -> None:
        """Admit a request of `count` messages, or raise without consuming anything.

        Raises QuotaExceeded if today's quota cannot cover the whole batch, RateLimited if
        the tenant's rate cannot (both carry `retry_after` seconds, also in `details`),
        Forbidden for an unknown tenant.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        cfg = self._tenant(tenant_id)
        u = self._usage_on(tenant_id, utc_day(wall_time))
        if u.used + count > cfg.daily_quota:
            retry = (u.day + 1) * SECONDS_PER_DAY - wall_time
            raise self._error(
                QuotaExceeded,
                f"tenant {tenant_id} has reached its daily quota of {cfg.daily_quota} "
                f"messages ({u.used} used today, {count} requested)",
                tenant_id,
                retry,
                daily_quota=cfg.daily_quota,
                used_today=u.used,
                requested=count,
            )
        bucket = self._buckets[tenant_id]
        if not bucket.try_take(count, now):
            retry = bucket.wait_time(count, now)
            raise self._error(
                RateLimited,
                f"tenant {tenant_id} is over its rate of {cfg.tps:g} messages/s",
                tenant_id,
                retry,
                tps=cfg.tps,
                requested=count,
            )
        u.used += count

    @staticmethod
    def _error(kind, message: str, tenant_id: str, retry: float, **details):
        retry = math.ceil(max(retry, 0.001) * 1000) / 1000  # whole ms, never 0
        err = kind(
            f"{message}; retry after {retry:g} s", tenant=tenant_id, retry_after=retry, **details
        )
        err.retry_after = retry
        return err

    def refund(self, tenant_id: str, count: int, wall_time: float) -> None:
        """Give back quota for messages admitted but not stored after all. A refund for a
        UTC day that is already over changes nothing (that day's quota is gone anyway).
        The TPS tokens are not given back."""
        if count < 0:
            raise ValueError("count must not be negative")
        u = self._usage.get(tenant_id)
        if u is not None and u.day == utc_day(wall_time):
            u.used = max(0, u.used - count)

    def restore(self, tenant_id: str, used_today: int, wall_time: float) -> None:
        """Set today's usage at startup (from the store's count of today's messages)."""
        if used_today < 0:
            raise ValueError("used_today must not be negative")
        self._usage[tenant_id] = _Usage(utc_day(wall_time), int(used_today))

    def used_today(self, tenant_id: str, wall_time: float) -> int:
        u = self._usage.get(tenant_id)
        return u.used if u is not None and u.day == utc_day(wall_time) else 0

    def remaining_today(self, tenant_id: str, wall_time: float) -> int:
        cfg = self._tenant(tenant_id)
        return max(0, cfg.daily_quota - self.used_today(tenant_id, wall_time))

    def retune(self, tenants: Iterable[TenantConfig], now: float) -> None:
        """Apply a new tenant list in place: changed rates retune the existing buckets
        (tokens kept), new tenants start with a full bucket, removed tenants lose their
        bucket. Today's usage is kept for everyone."""
        config = {t.id: t for t in tenants}
        buckets: dict[str, TokenBucket] = {}
        for tid, t in config.items():
            b = self._buckets.get(tid)
            depth = self._depth(t.tps)
            if b is None:
                b = TokenBucket(t.tps, depth, now)
            elif b.rate != t.tps or b.depth != depth:
                b.retune(t.tps, depth, now)
            buckets[tid] = b
        self._config = config
        self._buckets = buckets

    def __contains__(self, tenant_id: str) -> bool:
        return tenant_id in self._config

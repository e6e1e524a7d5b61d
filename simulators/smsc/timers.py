"""One timer heap for the whole simulator: delayed receipts, slow answers, retries.

A single task sleeps until the earliest deadline; scheduling an earlier one moves that
task's cancel-scope deadline, so there is never one task (or one sleep) per message. Works
with trio's MockClock: deadlines are trio.current_time() values. Callbacks are plain
functions (no await): they queue PDUs on sessions and wake the writers.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

import trio


class TimerHeap:
    def __init__(self, max_entries: int = 1_000_000, log: Any = None) -> None:
        self._log = log
        self._heap: list[tuple[float, int, Callable[..., Any], Any]] = []
        self._counter = itertools.count()
        self._scope: trio.CancelScope | None = None
        self.max_entries = max_entries
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, due: float, fn: Callable[[Any, float], Any], arg: Any) -> bool:
        """Call fn(arg, now) at trio time `due`. False (and counted) when the heap is full."""
        if len(self._heap) >= self.max_entries:
            self.dropped += 1
            return False
        heapq.heappush(self._heap, (due, next(self._counter), fn, arg))
        scope = self._scope
        if scope is not None and due < scope.deadline:
            scope.deadline = due
        return True

    def fire_due(self, now: float) -> int:
        heap = self._heap
        fired = 0
        while heap and heap[0][0] <= now:
            _, _, fn, arg = heapq.heappop(heap)
            try:
                fn(arg, now)
            except Exception:  # one bad callback must not stop every other timer
                if self._log is None:
                    raise
                self._log.exception(
                    "timer_callback_failed", callback=getattr(fn, "__qualname__", str(fn))
                )
            fired += 1
        return fired

    async def run(self) -> None:
        while True:
            self.fire_due(trio.current_time())
            deadline = self._heap[0][0] if self._heap else math.inf
            with trio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None

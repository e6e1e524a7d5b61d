"""A channel's queue: three FIFO lanes served strictly by priority (otp > notification >
marketing), with an async `get`.

Strict priority is what the service terms ask for: a one-time password must never wait
behind a marketing campaign. Marketing can starve while OTP traffic saturates a channel;
that is the intended trade.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import trio

T = TypeVar("T")
LANES = 3


class Lanes(Generic[T]):
    def __init__(self) -> None:
        self._lanes: list[deque[T]] = [deque() for _ in range(LANES)]
        self._lot = trio.lowlevel.ParkingLot()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def lengths(self) -> tuple[int, ...]:
        return tuple(len(lane) for lane in self._lanes)

    def put(self, item: T, priority: int, *, front: bool = False) -> None:
        """Enqueue at the back of its lane (or the front, for a retry that keeps its place)."""
        lanes = self._lanes
        lane = lanes[priority] if 0 <= priority < LANES else lanes[0 if priority < 0 else LANES - 1]
        if front:
            lane.appendleft(item)
        else:
            lane.append(item)
        self._size += 1
        if self._lot:  # someone waits in get() (a ParkingLot is falsy when empty)
            self._lot.unpark()

    def put_many(self, items: list[T], priority: int) -> None:
        """`put` of each of `items` (at the back of one lane, in order), with one wake-up."""
        if not items:
            return
        lanes = self._lanes
        lane = lanes[priority] if 0 <= priority < LANES else lanes[0 if priority < 0 else LANES - 1]
        lane.extend(items)
        self._size += len(items)
        if self._lot:
            self._lot.unpark(count=len(items))

    def get_nowait(self) -> T | None:
        if not self._size:
            return None
        for lane in self._lanes:
            if lane:
                self._size -= 1
                return lane.popleft()
        return None  # pragma: no cover - _size says otherwise

    def peek(self) -> T | None:
        """The item get_nowait() would return, left in place."""
        if not self._size:
            return None
        for lane in self._lanes:
            if lane:
                return lane[0]
        return None  # pragma: no cover - _size says otherwise

    async def get(self) -> T:
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            await self._lot.park()

    def drain(self, keep: Callable[[T], bool] | None = None) -> list[T]:
        """Remove and return every item (or those for which `keep` is False), in order."""
        taken: list[T] = []
        for lane in self._lanes:
            if keep is None:
                taken.extend(lane)
                lane.clear()
            else:
                stay = [x for x in lane if keep(x)]
                taken.extend(x for x in lane if not keep(x))
                lane.clear()
                lane.extend(stay)
        self._size = sum(len(lane) for lane in self._lanes)
        return taken

    def __iter__(self) -> Iterator[T]:
        for lane in self._lanes:
            yield from lane

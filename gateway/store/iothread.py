"""A thread of our own for blocking file work (the receipt journal's write + fdatasync),
one job at a time, that never preempts the event loop when it is woken.

Why not trio's thread cache. Handing a job to a sleeping thread wakes it, and Linux lets a
woken thread that has slept a lot preempt the one that woke it. Under load the waker is the
event loop: it then waits on the run queue behind the other processes of a busy machine
(measured in a batch run: ~0.4 ms per journal round on average, up to 29 ms, while the
thread had ~20 us of Python to run before its write released the GIL). A thread under
SCHED_BATCH is never woken into preemption (sched(7)): it runs at the next tick or on a free
core, and its round ends a little later, which only makes the next round bigger. The policy
belongs to the thread, so the thread is ours: a thread of trio's cache would keep it for
every other job it later ran.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any


Deliver = Callable[[Any, "BaseException | None"], object]
_Job = tuple[Callable[[], Any], Deliver]


def _batch_policy() -> bool:
    """Put the calling thread under SCHED_BATCH; False where the platform has no such
    policy or refuses it (the thread then runs under the default one)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        return False
    return True


class IoThread:
    """`submit(fn, deliver)`: run `fn()` in the thread, then `deliver(result, None)` there
    too, or `deliver(None, exception)` if it raised. Jobs run in submission order. `stop()`
    lets the thread end after the jobs submitted before it.
    The thread is a daemon: a job stuck in the kernel (a dead disk) does not hold the
    process at exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.batch_policy: bool | None = None  # known once the thread has started
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, fn: Callable[[], Any], deliver: Deliver) -> None:
        """Queue a job; the thread starts with the first one. RuntimeError if no thread can
        be started (the job is then not queued)."""
        if self._thread is None:
            jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
            thread = threading.Thread(target=self._main, args=(jobs,), name=self.name, daemon=True)
            thread.start()  # RuntimeError: can't start new thread
            self._thread, self._jobs = thread, jobs
        self._jobs.put((fn, deliver))

    def stop(self) -> None:
        """The thread ends once the jobs queued before this are done. Idempotent; a later
        submit() starts a new thread with a queue of its own."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _main(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        self.batch_policy = _batch_policy()
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, deliver = job
            try:
                result = fn()
            except BaseException as e:  # the trio side decides what a failed job means
                deliver(None, e)
            else:
                deliver(result, None)

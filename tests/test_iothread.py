"""gateway.store.iothread: the journal's own thread for blocking file work."""

from __future__ import annotations

import os
import threading

import pytest

from gateway.store.iothread import IoThread


def run_all(t: IoThread, fns) -> list:
    """Submit `fns`, wait for every delivery, return them in delivery order."""
    got: list = []
    done = threading.Event()

    def deliver(result, error):
        got.append((result, error))
        if len(got) == len(fns):
            done.set()

    for fn in fns:
        t.submit(fn, deliver)
    assert done.wait(5)
    return got


def test_jobs_run_in_order_in_one_thread_and_deliver_results_or_errors():
    t = IoThread("io-test")
    boom = ValueError("boom")

    def fail():
        raise boom

    names = []
    got = run_all(
        t,
        [
            lambda: names.append(threading.current_thread().name) or 1,
            fail,
            lambda: names.append(threading.current_thread().name) or 3,
        ],
    )
    assert got == [(1, None), (None, boom), (3, None)]
    assert names == ["io-test", "io-test"]
    t.stop()


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policy")
def test_the_thread_runs_under_sched_batch_and_the_caller_keeps_its_policy():
    t = IoThread("io-test")
    before = os.sched_getscheduler(0)
    (policy, _), = run_all(t, [lambda: os.sched_getscheduler(0)])
    assert policy == os.SCHED_BATCH and t.batch_policy is True
    assert os.sched_getscheduler(0) == before
    t.stop()


def test_stop_ends_the_thread_after_queued_jobs_and_a_later_submit_starts_a_new_one():
    t = IoThread("io-test")
    gate = threading.Event()
    idents = []
    got = []
    t.submit(lambda: gate.wait(5) and idents.append(threading.get_ident()), lambda r, e: got.append(e))
    first = t._thread
    t.stop()
    assert not t.running
    gate.set()
    first.join(5)
    assert not first.is_alive() and got == [None]  # the queued job ran before the stop
    run_all(t, [lambda: idents.append(threading.get_ident())])
    assert t.running and t._thread is not first
    t.stop()
    t.stop()  # idempotent

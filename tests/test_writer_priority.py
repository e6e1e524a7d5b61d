"""The store's writer process runs `store.writer_nice` levels below the gateway, so waking
it does not preempt the event loop (docs/architecture.md, "The writer process's priority")."""

from __future__ import annotations

import os

import pytest
import trio

from gateway.config import StoreConfig
from gateway.store.sqlite import SqliteStore
from tests.test_store_sqlite import msg


@pytest.mark.parametrize("nice", [0, 7, 19])
async def test_the_writer_process_runs_below_the_gateway(tmp_path, nice):
    own = os.getpriority(os.PRIO_PROCESS, 0)
    s = SqliteStore(StoreConfig(path=str(tmp_path / "g.db"), batch_wait_ms=1.0, writer="process", writer_nice=nice))
    async with trio.open_nursery() as n:
        await n.start(s.run)
        await s.insert_messages([msg(1)])  # it works at its priority
        assert s.writer_pid is not None
        assert os.getpriority(os.PRIO_PROCESS, s.writer_pid) == min(19, own + nice)
        assert os.getpriority(os.PRIO_PROCESS, 0) == own  # ours is untouched
        n.cancel_scope.cancel()

"""EsmeClient.submit_nowait given the caller's clock reading (`now`, what Channel._burst
reads once per burst): the request's deadline is that reading plus its timeout, exactly as
when submit_nowait reads trio's clock itself; the old call form still reads it. (Named
with this helper session's test prefix; it tests the second interface change it made.)"""

from __future__ import annotations

import trio

from gateway.smpp.esme import EsmeClient
from tests.scripted_smsc import ScriptedSmsc
from tests.test_dispatch_burst import channel, job
from tests.test_esme import settings, submit


def _deadlines(client: EsmeClient) -> list[float]:
    return sorted(o.deadline for o in client._session._outstanding.values())  # type: ignore[union-attr]


async def test_the_deadline_is_the_given_clock_plus_the_timeout(nursery, autojump_clock) -> None:
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    client = EsmeClient(settings(port, response_timeout=5.0))
    nursery.start_soon(client.run)
    await client.wait_bound()
    smsc.mute = True  # answers nothing from here: the requests stay outstanding
    now = trio.current_time()
    assert client.submit_nowait(submit(1), lambda r: None, now=now - 1.0)
    assert client.submit_nowait(submit(2), lambda r: None, 2.0, now - 0.5)
    assert client.submit_nowait(submit(3), lambda r: None)  # the old form: its own reading
    assert _deadlines(client) == [now + 1.5, now + 4.0, now + 5.0]
    await client.close()


class _Client:
    def __init__(self) -> None:
        self.nows: list[float | None] = []

    def free_slots(self) -> int:
        return 64

    def submit_nowait(self, pdu, on_result, timeout=None, now=None) -> bool:
        assert timeout is None
        self.nows.append(now)
        return True


async def test_the_burst_passes_its_clock_reading(autojump_clock) -> None:
    ch, _ = channel(tps=1000, burst=1000)
    for i in range(3):
        ch.queue.put(job(i), 0)
    await trio.sleep(7)
    client = _Client()
    ch._burst(client)  # type: ignore[arg-type]
    assert client.nows == [trio.current_time()] * 3

"""Load generator: N binds, window W, submit_sm until a count or a duration, bounded.

    python -m simulators.loadgen --port 2775 --account test:test --binds 4 --window 64 \\
        --count 200000 [--duration 20] [--no-wait-receipts] [--json]

Each bind is one trio task on one `Session(Role.ESME)` over a TCP_NODELAY socket: it keeps
its window full of submit_sm, answers every deliver_sm at once (its deliver_sm_resp goes out
in the same write as the next submits), and counts submit_sm_resp by status and receipts
(deliver_sm with esm_class 0x04). The run ends when the count is submitted and answered and,
unless told not to wait, every accepted message has its receipt, or when the duration (plus a
drain grace) is over. Reports msg/s and submit_sm -> submit_sm_resp latency percentiles.

The generator's own cost per message is kept low so that it measures the SMSC, not itself:
one submit_sm template object is re-sent for every message (the session gives it a new
sequence number on send) and its body is encoded once, by the codec, then reused with each
new header (`_Cached`); the deliver_sm_resp likewise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter

import msgspec
import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import INTERFACE_VERSION_34, CommandId, status_name
from gateway.smpp.errors import SmppError
from gateway.smpp.session import RequestReceived, ResponseReceived, Role, Session
from gateway.smpp.transport import RECEIVE_SIZE, connect

_SUBMIT_SM_RESP = int(CommandId.SUBMIT_SM_RESP)
_DELIVER_SM = int(CommandId.DELIVER_SM)
_HEADER = P.HEADER.pack


def _cached(cls: type[P.Pdu]) -> type[P.Pdu]:
    """A subclass of `cls` whose encode() reuses the body the codec produced the first time.

    Only for PDUs that never change after construction except for their sequence number.
    """

    class _Cached(cls, kw_only=True, gc=False):  # type: ignore[valid-type, misc]
        encoded_body: bytes | None = None  # not a PDU field: the cache

        def encode(self) -> bytes:
            body = self.encoded_body
            if body is None:
                body = self.encoded_body = cls.encode(self)[16:]
            return (
                _HEADER(16 + len(body), self.command_id, self.command_status, self.sequence_number)
                + body
            )

    _Cached.__name__ = f"Cached{cls.__name__}"
    return _Cached


CachedSubmitSm = _cached(P.SubmitSm)
CachedDeliverSmResp = _cached(P.DeliverSmResp)


class LoadResult(msgspec.Struct):
    binds: int
    window: int
    submitted: int
    responses: dict[str, int]
    accepted: int
    receipts: int
    mo: int
    elapsed_s: float
    submit_rate: float  # submit_sm answered per second
    latency_ms: dict[str, float]
    complete: bool  # every submit answered and (if waited for) every receipt received
    client_cpu_s: float = 0.0  # CPU time of this process during the run

    def line(self) -> str:
        lat = " ".join(f"{k}={v:.2f}" for k, v in self.latency_ms.items())
        return (
            f"{self.submitted} submit_sm over {self.binds} bind(s) window {self.window} in "
            f"{self.elapsed_s:.2f}s: {self.submit_rate:,.0f} msg/s; receipts {self.receipts}; "
            f"resps {self.responses}; latency ms {lat}; client CPU {self.client_cpu_s:.2f}s; "
            f"complete={self.complete}"
        )


class _Shared:
    def __init__(self, count: int, deadline: float, wait_receipts: bool) -> None:
        self.remaining = count
        self.deadline = deadline
        self.wait_receipts = wait_receipts
        self.submitted = 0
        self.answered = 0
        self.accepted = 0
        self.receipts = 0
        self.mo = 0
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.done = trio.Event()

    def check_done(self, now: float) -> None:
        sending_over = self.remaining == 0 or now >= self.deadline
        if (
            sending_over
            and self.answered == self.submitted
            and (not self.wait_receipts or self.receipts >= self.accepted)
        ):
            self.done.set()


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values.sort()
    n = len(values)

    def pct(p: float) -> float:
        return values[min(n - 1, int(p * n))] * 1000.0

    return {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": values[-1] * 1000.0}


async def _bind_loop(
    host: str,
    port: int,
    system_id: str,
    password: str,
    window: int,
    template: P.Pdu,
    shared: _Shared,
    bind_type: str,
    ready: trio.Event,
    started: list[int],
    total_binds: int,
) -> None:
    stream = await connect(host, port, timeout=5.0)
    session = Session(Role.ESME, window=window, response_timeout=30.0)
    bind_cls = P.BindTransceiver if bind_type == "transceiver" else P.BindTransmitter
    session.send(
        bind_cls(system_id=system_id, password=password, interface_version=INTERFACE_VERSION_34),
        trio.current_time(),
    )
    await stream.send_all(session.data_to_send())
    with trio.fail_after(5):
        while not session.bound:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise ConnectionError("closed during bind")
            session.receive_data(data)
            for ev in session.next_events():
                if isinstance(ev, ResponseReceived) and ev.pdu.command_status != 0:
                    raise ConnectionError(f"bind refused: {status_name(ev.pdu.command_status)}")
    started.append(1)
    if len(started) == total_binds:
        ready.set()
    await ready.wait()
    resp_tmpl = CachedDeliverSmResp(message_id="")
    sent_at: dict[int, float] = {}
    statuses = shared.statuses
    latencies = shared.latencies
    clock = time.perf_counter
    try:
        while True:
            now = clock()
            if shared.remaining > 0 and trio.current_time() < shared.deadline:
                free = session.window_free
                free = min(free, shared.remaining)
                if free > 0:
                    shared.remaining -= free
                    shared.submitted += free
                    send = session.send
                    for _ in range(free):
                        sent_at[send(template).sequence_number] = now
            data = session.data_to_send()
            if data:
                await stream.send_all(data)
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                return
            session.receive_data(data)
            now = clock()
            for ev in session.next_events():
                cls = ev.__class__
                if cls is ResponseReceived:
                    pdu = ev.pdu
                    if ev.request.command_id == CommandId.SUBMIT_SM:
                        status = pdu.command_status
                        statuses[status] += 1
                        shared.answered += 1
                        if status == 0 and pdu.command_id == _SUBMIT_SM_RESP:
                            shared.accepted += 1
                        t0 = sent_at.pop(pdu.sequence_number, None)
                        if t0 is not None:
                            latencies.append(now - t0)
                elif cls is RequestReceived:
                    pdu = ev.pdu
                    if pdu.command_id == _DELIVER_SM:
                        resp_tmpl.sequence_number = pdu.sequence_number
                        session.send(resp_tmpl)
                        if pdu.esm_class & 0x04:
                            shared.receipts += 1
                        else:
                            shared.mo += 1
            shared.check_done(trio.current_time())
    finally:
        with trio.move_on_after(1) as cs:
            cs.shield = True
            try:
                if session.bound:
                    session.send(P.Unbind(), trio.current_time())
                    await stream.send_all(session.data_to_send())
            except (trio.BrokenResourceError, trio.ClosedResourceError, SmppError):
                pass  # the run is over either way; the unbind is a courtesy
            await trio.aclose_forcefully(stream)


async def run_load(
    host: str = "127.0.0.1",
    port: int = 2775,
    system_id: str = "test",
    password: str = "test",
    *,
    binds: int = 1,
    window: int = 64,
    count: int = 10_000,
    duration: float = 20.0,
    wait_receipts: bool = True,
    drain_timeout: float = 10.0,
    text: bytes = b"Load test message 0123456789",
    destination: str = "491700000000",
    bind_type: str = "transceiver",
    registered_delivery: int = 1,
) -> LoadResult:
    """Run the load; always bounded by `duration` + `drain_timeout`."""
    if count <= 0 or binds <= 0 or window <= 0:
        raise ValueError("count, binds and window must be positive")
    template = CachedSubmitSm(
        source_addr="LoadGen",
        source_addr_ton=5,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=destination,
        registered_delivery=registered_delivery,
        short_message=text,
    )
    start = trio.current_time()
    shared = _Shared(
        count, math.inf, wait_receipts and registered_delivery != 0 and bind_type == "transceiver"
    )
    ready = trio.Event()
    started: list[int] = []
    t0 = t1 = cpu0 = cpu1 = 0.0
    complete = False
    with trio.move_on_after(duration + drain_timeout + 5.0):
        async with trio.open_nursery() as nursery:
            for _ in range(binds):
                nursery.start_soon(
                    _bind_loop,
                    host,
                    port,
                    system_id,
                    password,
                    window,
                    template,
                    shared,
                    bind_type,
                    ready,
                    started,
                    binds,
                )
            with trio.fail_after(10):
                await ready.wait()
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            shared.deadline = trio.current_time() + duration
            with trio.move_on_at(shared.deadline + drain_timeout):
                await shared.done.wait()
                complete = True
            t1 = time.perf_counter()
            cpu1 = time.process_time()
            nursery.cancel_scope.cancel()
    elapsed = max(t1 - t0, 1e-9) if t0 else trio.current_time() - start
    return LoadResult(
        binds=binds,
        window=window,
        submitted=shared.submitted,
        responses={status_name(s): n for s, n in sorted(shared.statuses.items())},
        accepted=shared.accepted,
        receipts=shared.receipts,
        mo=shared.mo,
        elapsed_s=round(elapsed, 4),
        submit_rate=round(shared.answered / elapsed, 1),
        latency_ms={k: round(v, 3) for k, v in _percentiles(shared.latencies).items()},
        complete=complete,
        client_cpu_s=round(cpu1 - cpu0, 3),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m simulators.loadgen", description="SMPP load generator"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2775)
    p.add_argument("--account", default="test:test", metavar="SYSTEM_ID:PASSWORD")
    p.add_argument("--binds", type=int, default=1)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument(
        "--duration", type=float, default=20.0, help="stop submitting after this many seconds"
    )
    p.add_argument("--bind-type", choices=["transceiver", "transmitter"], default="transceiver")
    p.add_argument("--no-wait-receipts", action="store_true")
    p.add_argument("--no-receipts", action="store_true", help="registered_delivery 0")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    system_id, _, password = args.account.partition(":")
    result = trio.run(
        lambda: run_load(
            args.host,
            args.port,
            system_id,
            password,
            binds=args.binds,
            window=args.window,
            count=args.count,
            duration=args.duration,
            wait_receipts=not args.no_wait_receipts,
            bind_type=args.bind_type,
            registered_delivery=0 if args.no_receipts else 1,
        )
    )
    print(json.dumps(msgspec.to_builtins(result)) if args.json else result.line())
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main())

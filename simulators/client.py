"""A small trio ESME on our Session, for tests and scripts (not for throughput: see loadgen).

    async with await EsmeClient.connect("127.0.0.1", port) as esme:
        await esme.bind("transceiver", "test", "secret")
        resp = await esme.request(P.SubmitSm(destination_addr="4917...", short_message=b"hi"))
        receipt = await esme.next_delivery(timeout=2)

A background task reads the socket; responses wake their `request`; deliver_sm / data_sm /
alert_notification are answered (ESME_ROK, or what `deliver_status` returns, or not at all
when it returns None) and queued for `next_delivery`; everything else (unbind from the SMSC,
invalid PDUs, enquire_link) is recorded in `events`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Self

import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import INTERFACE_VERSION_34, CommandId
from gateway.smpp.errors import ProtocolError
from gateway.smpp.session import (
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    Role,
    Session,
    Unbound,
)
from gateway.smpp.transport import RECEIVE_SIZE, connect

_BINDS = {
    "transmitter": P.BindTransmitter,
    "receiver": P.BindReceiver,
    "transceiver": P.BindTransceiver,
}


class BindError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused with status 0x{status:08x}")
        self.status = status


class EsmeClient:
    def __init__(
        self, stream: trio.abc.Stream, *, window: int = 100, response_timeout: float = 10.0
    ) -> None:
        self.stream = stream
        self.session = Session(Role.ESME, window=window, response_timeout=response_timeout)
        self.events: list[Any] = []  # every session event, in order
        self.deliveries: list[P.Pdu] = []  # every deliver_sm / data_sm received
        self.deliver_status: Callable[[P.Pdu], int | None] = lambda pdu: 0
        self.closed = trio.Event()
        self._waiters: dict[int, trio.Event] = {}
        self._responses: dict[int, P.Pdu] = {}
        self._deliver_send, self._deliver_recv = trio.open_memory_channel[P.Pdu](math.inf)
        self._send_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._nursery_cm: Any = None

    @classmethod
    async def connect(cls, host: str, port: int, **kwargs: Any) -> EsmeClient:
        stream = await connect(host, port, timeout=5.0)
        return cls(stream, **kwargs)

    async def __aenter__(self) -> Self:
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._nursery.start_soon(self._reader)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        await self._nursery_cm.__aexit__(*exc)
        await trio.aclose_forcefully(self.stream)

    # ---- sending ------------------------------------------------------------------------

    async def flush(self) -> None:
        data = self.session.data_to_send()
        if data:
            async with self._send_lock:
                await self.stream.send_all(data)

    async def send_raw(self, data: bytes) -> None:
        await self.flush()
        async with self._send_lock:
            await self.stream.send_all(data)

    def queue(self, pdu: P.Pdu) -> P.Pdu:
        """Queue a request without waiting (call flush()); returns it with its sequence."""
        return self.session.send(pdu, trio.current_time())

    async def request(self, pdu: P.Pdu, timeout: float = 5.0) -> P.Pdu:
        """Send a request and wait for its response (or generic_nack). TooSlowError on timeout."""
        pdu = self.queue(pdu)
        return await self.wait_response(pdu.sequence_number, timeout)

    async def wait_response(self, seq: int, timeout: float = 5.0) -> P.Pdu:
        ev = self._waiters.setdefault(seq, trio.Event())
        await self.flush()
        with trio.fail_after(timeout):
            await ev.wait()
        del self._waiters[seq]
        resp = self._responses.pop(seq, None)
        if resp is None:
            raise trio.BrokenResourceError("connection closed before the response")
        return resp

    async def bind(
        self, bind_type: str, system_id: str, password: str, timeout: float = 5.0
    ) -> P.Pdu:
        resp = await self.request(
            # 0x34: this client takes TLVs (a lower version gets none from the simulator).
            _BINDS[bind_type](
                system_id=system_id, password=password, interface_version=INTERFACE_VERSION_34
            ),
            timeout,
        )
        if resp.command_status != 0:
            raise BindError(resp.command_status)
        return resp

    async def unbind(self, timeout: float = 5.0) -> P.Pdu:
        return await self.request(P.Unbind(), timeout)

    async def next_delivery(self, timeout: float = 5.0) -> P.Pdu:
        with trio.fail_after(timeout):
            return await self._deliver_recv.receive()

    async def deliveries_n(self, n: int, timeout: float = 5.0) -> list[P.Pdu]:
        return [await self.next_delivery(timeout) for _ in range(n)]

    def pending_deliveries(self) -> list[P.Pdu]:
        out = []
        while True:
            try:
                out.append(self._deliver_recv.receive_nowait())
            except trio.WouldBlock:
                return out

    # ---- receiving ----------------------------------------------------------------------

    async def _reader(self) -> None:
        session = self.session
        try:
            while True:
                try:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not data:
                    break
                session.receive_data(data)
                for ev in session.next_events():
                    self._on_event(ev)
                await self.flush()
        finally:
            for seq in list(self._waiters):
                self._waiters[seq].set()
            self.closed.set()

    def _on_event(self, ev: Any) -> None:
        self.events.append(ev)
        if isinstance(ev, ResponseReceived):
            seq = ev.pdu.sequence_number
            self._responses[seq] = ev.pdu
            self._waiters.setdefault(seq, trio.Event()).set()
        elif isinstance(ev, RequestReceived):
            pdu = ev.pdu
            if pdu.command_id in (CommandId.DELIVER_SM, CommandId.DATA_SM):
                self.deliveries.append(pdu)
                status = self.deliver_status(pdu)
                if status is not None:
                    try:
                        self.session.send(P.make_response(pdu, status, message_id=""))
                    except ProtocolError:
                        pass
                self._deliver_send.send_nowait(pdu)

    @property
    def unbound_by_peer(self) -> bool:
        return any(isinstance(e, Unbound) and e.by_peer for e in self.events)

    def expire(self) -> list[RequestTimedOut]:
        return self.session.expire(trio.current_time())

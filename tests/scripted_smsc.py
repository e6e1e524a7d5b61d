"""A tiny scripted SMSC for ESME driver tests: every reaction is a test-chosen function.

Independent of the bundled simulator on purpose, so the ESME is tested against behaviour the
test spells out exactly (and the simulator is tested against the ESME separately).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import trio

from gateway.smpp import pdu as P
from gateway.smpp import session as S
from gateway.smpp.constants import CommandStatus
from gateway.smpp.transport import set_nodelay

# A reaction gets (connection, request pdu) and returns PDUs to send (or None for silence).
Reaction = Callable[["Conn", P.Pdu], list[P.Pdu] | None]


def accept(conn: Conn, pdu: P.Pdu) -> list[P.Pdu]:
    conn.server.counter += 1
    return [P.make_response(pdu, message_id=f"{conn.server.counter:x}")]


class Conn:
    def __init__(self, server: ScriptedSmsc, stream: trio.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.session = S.Session(S.Role.SMSC, window=1000)
        self.received: list[P.Pdu] = []
        self.deliver_statuses: list[int] = []  # how the ESME answered our deliver_sm

    async def push(self, *pdus: P.Pdu) -> None:
        for p in pdus:
            self.session.send(p, trio.current_time())
        await self.stream.send_all(self.session.data_to_send())


class ScriptedSmsc:
    def __init__(self, password: str = "secret") -> None:
        self.password = password
        self.on_submit: Reaction = accept
        self.counter = 0
        self.binds = 0
        self.bind_attempts = 0
        self.link_checks = 0
        self.mute = False  # read everything, answer nothing (a hung SMSC)
        self.unbinds = 0
        self.connections: list[Conn] = []
        self.port = 0
        self.received: list[P.Pdu] = []
        self.new_conn = trio.Event()

    async def serve(
        self,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        if tls is not None:
            listeners = [trio.SSLListener(lst, tls, https_compatible=False) for lst in listeners]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        set_nodelay(stream)
        conn = Conn(self, stream)
        self.connections.append(conn)
        self.new_conn.set()
        self.new_conn = trio.Event()
        async with stream:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                conn.session.receive_data(data)
                for ev in conn.session.next_events():
                    if isinstance(ev, S.ResponseReceived) and ev.request.command_id == P.DeliverSm.command_id:
                        conn.deliver_statuses.append(ev.pdu.command_status)
                    if isinstance(ev, S.LinkChecked):
                        self.link_checks += 1
                    if isinstance(ev, S.Unbound):
                        self.unbinds += 1
                    if isinstance(ev, S.RequestReceived):
                        pdu = ev.pdu
                        conn.received.append(pdu)
                        self.received.append(pdu)
                        if pdu.command_id in P.BIND_REQUESTS:
                            self.bind_attempts += 1
                            ok = pdu.password == self.password
                            self.binds += ok
                            conn.session.send(
                                P.make_response(pdu, system_id="scripted")
                                if ok
                                else P.error_response(
                                    pdu.command_id, pdu.sequence_number, CommandStatus.ESME_RINVPASWD
                                )
                            )
                        else:
                            for out in self.on_submit(conn, pdu) or []:
                                conn.session.send(out, trio.current_time())
                out = conn.session.data_to_send()
                if out and not self.mute:
                    try:
                        await stream.send_all(out)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return

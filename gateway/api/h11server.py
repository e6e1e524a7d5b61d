"""A small HTTP/1.1 server for ASGI apps, on h11 + trio: the lean alternative to hypercorn.

It serves exactly what the gateway's APIs need: HTTP/1.1 with keep-alive, request bodies
(Content-Length or chunked, decoded by h11), one request at a time per connection, the
ASGI 3 `http` scope (no lifespan events: the gateway's apps need none). No HTTP/2, no websockets, no TLS (terminate TLS
in front, or use hypercorn). Chosen per listener in the config (`listeners.server`), because
the brief measured ~150 us per request here against hypercorn's ~530 us; see
docs/benchmarks.md for the measurement on this code. A leaf module (h11, trio, structlog):
the simulator serves its control API with it too.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import h11
import structlog
import trio

log = structlog.get_logger("gateway.api.h11server")

App = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]
MAX_HEADER_BYTES = 64 * 1024
MAX_CONNECTIONS = 4096  # accepting pauses beyond this many open connections
IDLE_TIMEOUT = 75.0  # seconds a keep-alive connection may sit idle
READ_SIZE = 64 * 1024


async def serve(
    app: App,
    bind: str,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on `host:port` (port 0: any free port) until `shutdown_trigger()` returns;
    then stop accepting. `task_status.started` gets the bound addresses as "host:port"."""
    host, _, port = bind.rpartition(":")
    listeners = await trio.open_tcp_listeners(int(port), host=host.strip("[]"))
    bound = [f"{h}:{p}" for h, p, *_ in (lst.socket.getsockname() for lst in listeners)]
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as accepting:
            async with trio.open_nursery() as conns:
                conns.start_soon(_accept_loop, listeners, app, conns)
                task_status.started(bound)
                await shutdown_trigger()
                accepting.cancel()
        nursery.cancel_scope.cancel()


async def _accept_loop(listeners: list[trio.SocketListener], app: App, conns: trio.Nursery) -> None:
    limit = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def one(listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                token = object()
                await limit.acquire_on_behalf_of(token)
                stream = await listener.accept()
                stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns.start_soon(_connection, stream, app, partial(limit.release_on_behalf_of, token))

    async with trio.open_nursery() as n:
        for listener in listeners:
            n.start_soon(one, listener)


async def _connection(stream: trio.SocketStream, app: App, release: Callable[[], None]) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    peer = stream.socket.getpeername()
    try:
        async with stream:
            while True:
                request = await _next_request(stream, conn)
                if request is None:
                    return
                await _handle(stream, conn, request, app, peer)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError, OSError):
        return
    finally:
        release()


async def _read(stream: trio.SocketStream, conn: h11.Connection) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.move_on_after(IDLE_TIMEOUT) as timeout:
            data = await stream.receive_some(READ_SIZE)
        if timeout.cancelled_caught:
            return h11.ConnectionClosed()
        conn.receive_data(data)


async def _next_request(stream: trio.SocketStream, conn: h11.Connection) -> h11.Request | None:
    try:
        event = await _read(stream, conn)
    except h11.RemoteProtocolError as e:
        await _send_simple(stream, conn, e.error_status_hint or 400)
        return None
    if isinstance(event, h11.Request):
        return event
    return None


async def _send_simple(stream: trio.SocketStream, conn: h11.Connection, status: int) -> None:
    try:
        body = b'{"error": {"code": "bad_request", "message": "malformed HTTP request"}}'
        data = conn.send(
            h11.Response(
                status_code=status,
                headers=[("content-type", "application/json"), ("content-length", str(len(body))), ("connection", "close")],
            )
        )
        data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        await stream.send_all(data)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _handle(
    stream: trio.SocketStream, conn: h11.Connection, req: h11.Request, app: App, peer: Any
) -> None:
    target = req.target
    path, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": req.http_version.decode(),
        "method": req.method.decode("ascii"),
        "scheme": "http",
        "path": path.decode("latin-1"),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in req.headers],
        "client": peer[:2] if isinstance(peer, tuple) else None,
        "server": None,
    }
    body_done = False
    response_started = False
    response_done = False

    async def receive() -> dict:
        nonlocal body_done
        if body_done:
            await trio.sleep_forever()  # the app asked past the end: it waits for disconnect
        event = await _read(stream, conn)
        if isinstance(event, h11.Data):
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        body_done = True
        if isinstance(event, h11.EndOfMessage):
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal response_started, response_done
        if message["type"] == "http.response.start":
            response_started = True
            headers = list(message.get("headers", []))
            await stream.send_all(
                conn.send(h11.Response(status_code=message["status"], headers=headers))
            )
        elif message["type"] == "http.response.body":
            data = conn.send(h11.Data(data=message.get("body", b""))) if message.get("body") else b""
            if not message.get("more_body", False):
                data += conn.send(h11.EndOfMessage())
                response_done = True
            if data:
                await stream.send_all(data)

    try:
        await app(scope, receive, send)
    except Exception:
        log.exception("asgi_app_failed", path=scope["path"])
    if not response_started:
        await _send_simple(stream, conn, 500)
        return
    if not response_done:
        raise trio.BrokenResourceError("the app did not finish its response")
    # Drain an unread request body so the connection can be reused.
    while conn.their_state is h11.SEND_BODY:
        event = await _read(stream, conn)
        if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break

"""A small HTTP/1.1 server for ASGI apps on trio: the lean alternative to hypercorn.

It serves exactly what the gateway's APIs need: HTTP/1.1 with keep-alive and pipelining,
request bodies (Content-Length or chunked, read whole, bounded), `Expect: 100-continue`,
one request at a time per connection, the ASGI 3 `http` scope (no lifespan events: the
gateway's apps need none). No HTTP/2, no websockets, no TLS (terminate TLS in front, or use
hypercorn). Parsing is gateway.api.http11 (sans-IO); this module is the trio driver.

Chosen per listener in the config (`listeners.server`): on one message per request it
needs a fraction of hypercorn's CPU per request (docs/benchmarks.md). A leaf module (trio,
structlog, msgspec, and gateway.errors for the error codes): the simulator serves its
control API with it too.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec
import structlog
import trio

from gateway.api.http11 import NEED_DATA, HttpError, Request, RequestReader, response_head
from gateway.errors import BadRequest, GatewayError, PayloadTooLarge

log = structlog.get_logger("gateway.api.httpserver")

App = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024  # the apps refuse smaller bodies themselves (413)
MAX_CONNECTIONS = 4096  # accepting pauses beyond this many open connections
IDLE_TIMEOUT = 75.0  # seconds a keep-alive connection may sit idle between requests
REQUEST_TIMEOUT = 60.0  # seconds from a request's first byte to its last (slow senders)
HANDLER_TIMEOUT = 60.0  # seconds the app may take for one request
SEND_TIMEOUT = 60.0  # seconds a response may take to leave (a client that stopped reading)
READ_SIZE = 64 * 1024
_NO_BODY_STATUS = frozenset({204, 304})  # and 1xx: no body, no Content-Length (RFC 9110 8.6)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# The server's own refusals use the apps' machine codes (docs/api.md) where a typed error
# has that status; the rest (417, 431, 501, 505) have no typed error and answer http_<status>.
_ERROR_CODES = {
    BadRequest.http_status: BadRequest.code,
    PayloadTooLarge.http_status: PayloadTooLarge.code,
    GatewayError.http_status: GatewayError.code,  # 500 internal_error, as the apps answer it
}


async def serve(
    app: App,
    bind: str,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    max_body: int = MAX_BODY_BYTES,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on `host:port` (port 0: any free port) until `shutdown_trigger()` returns;
    then stop accepting. `task_status.started` gets the bound addresses as "host:port".
    Request bodies over `max_body` bytes (on the wire, for chunked ones) get 413."""
    host, _, port = bind.rpartition(":")
    listeners = await trio.open_tcp_listeners(int(port), host=host.strip("[]"))
    bound = [f"{h}:{p}" for h, p, *_ in (lst.socket.getsockname() for lst in listeners)]
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as accepting:
            async with trio.open_nursery() as conns:
                conns.start_soon(_accept_loop, listeners, partial(_connection, app=app, max_body=max_body), conns)
                task_status.started(bound)
                await shutdown_trigger()
                accepting.cancel()
        nursery.cancel_scope.cancel()


async def _accept_loop(
    listeners: list[trio.SocketListener],
    connection: Callable[..., Awaitable[None]],
    conns: trio.Nursery,
) -> None:
    limit = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def one(listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                token = object()
                await limit.acquire_on_behalf_of(token)
                stream = await listener.accept()
                stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns.start_soon(connection, stream, partial(limit.release_on_behalf_of, token))

    async with trio.open_nursery() as n:
        for listener in listeners:
            n.start_soon(one, listener)


async def _connection(
    stream: trio.SocketStream, release: Callable[[], None], *, app: App, max_body: int
) -> None:
    reader = RequestReader(max_head=MAX_HEAD_BYTES, max_body=max_body)
    try:
        async with stream:
            peer = stream.socket.getpeername()
            request_deadline = None  # set while a request is partly read
            # One scope per connection bounds every read and send: its deadline is set before
            # each (a scope per read and per send cost ~5 us a request), and before the app
            # handles a request (HANDLER_TIMEOUT).
            with trio.CancelScope() as guard:
                while True:
                    try:
                        req = reader.next_request()
                        if req is NEED_DATA:
                            if reader.expects_continue:
                                reader.continue_sent()
                                await _send(stream, _CONTINUE, guard)
                            now = trio.current_time()
                            if reader.buffered or reader.pending:
                                if request_deadline is None:
                                    request_deadline = now + REQUEST_TIMEOUT
                                guard.deadline = request_deadline
                            else:
                                guard.deadline = now + IDLE_TIMEOUT
                            data = await stream.receive_some(READ_SIZE)
                            if not data:
                                return  # closed by the peer
                            reader.feed(data)
                            continue
                    except HttpError as e:
                        await _send_error(stream, e.status, e.message)
                        return
                    request_deadline = None
                    assert isinstance(req, Request)
                    # The app's own time, not what was left of the read's (a request read
                    # just before the idle deadline was cancelled mid-handling).
                    guard.deadline = trio.current_time() + HANDLER_TIMEOUT
                    if not await _handle(stream, req, app, peer, guard) or not req.keep_alive:
                        return
            # the guard fired: idle too long, a request too slow, or a response not read
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return
    finally:
        release()


async def _send(stream: trio.SocketStream, data: bytes, guard: trio.CancelScope) -> None:
    """send_all, bounded by SEND_TIMEOUT: a client that stops reading loses its connection
    (the next read sets its own deadline)."""
    guard.deadline = trio.current_time() + SEND_TIMEOUT
    await stream.send_all(data)


async def _send_error(stream: trio.SocketStream, status: int, message: str) -> None:
    """A refused request: JSON error body (the APIs' shape), then the connection closes."""
    code = _ERROR_CODES.get(status) or f"http_{status}"
    body = msgspec.json.encode({"error": {"code": code, "message": message}})
    head = response_head(
        status,
        [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ],
    )
    try:
        with trio.move_on_after(SEND_TIMEOUT):
            await stream.send_all(head + body)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _handle(
    stream: trio.SocketStream, req: Request, app: App, peer: Any, guard: trio.CancelScope
) -> bool:
    """Run the app for one request; returns whether the connection may serve another."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": req.http_version,
        "method": req.method,
        "scheme": "http",
        "path": req.path.decode("latin-1"),
        "raw_path": req.path,
        "query_string": req.query,
        "root_path": "",
        "headers": req.headers,
        "client": peer[:2] if isinstance(peer, tuple) else None,
        "server": None,
    }
    head_only = req.method == "HEAD"
    body_given = False
    status = 0
    headers: list = []
    started = done = chunked = False
    keep_alive = req.keep_alive
    declared: int | None = None  # the app's Content-Length
    sent = 0  # body bytes the app gave

    async def receive() -> dict:
        nonlocal body_given
        if body_given:
            await trio.sleep_forever()  # past the end: an app waiting for a disconnect
        body_given = True
        return {"type": "http.request", "body": req.body, "more_body": False}

    async def send(message: dict) -> None:
        # The head waits for the first body message, so a whole response usually leaves
        # in one write (one syscall, one TCP segment).
        nonlocal status, headers, started, done, chunked, keep_alive, declared, sent
        kind = message["type"]
        if kind == "http.response.start":
            if started or status:
                raise RuntimeError("response already started")
            status = message["status"]
            headers = list(message.get("headers", ()))
            return
        if kind != "http.response.body" or not status or done:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        sent += len(body)
        out = b""
        no_body = status in _NO_BODY_STATUS or status < 200
        if not started:
            started = True
            for name, value in headers:
                name = name.lower()
                if name == b"content-length":
                    declared = int(value) if value.isdigit() else -1
                elif name == b"connection" and b"close" in value.lower():
                    keep_alive = False  # the app asked for it (RFC 9112 9.6)
            if declared is None and not no_body:
                if not more:
                    declared = len(body)
                    headers.append((b"content-length", b"%d" % declared))
                elif req.http_version == "1.1":
                    chunked = True
                    headers.append((b"transfer-encoding", b"chunked"))
                else:  # an HTTP/1.0 client knows no chunks: the end of the body is the close
                    keep_alive = False
            if not keep_alive:
                headers.append((b"connection", b"close"))
            out = response_head(status, headers)
        if not head_only and not no_body:
            if chunked:
                if body:
                    out += b"%x\r\n%s\r\n" % (len(body), body)
                if not more:
                    out += b"0\r\n\r\n"
            else:
                out += body
        if not more:
            done = True
            if declared is not None and declared != sent and not head_only:
                # The app's Content-Length does not match its body: the framing is lost,
                # so the connection cannot carry another response.
                keep_alive = False
                log.error("asgi_content_length_mismatch", declared=declared, sent=sent)
        if out:
            await _send(stream, out, guard)

    try:
        await app(scope, receive, send)
    except Exception:
        log.exception("asgi_app_failed", path=scope["path"])
        if not started:
            await _send_error(stream, 500, "internal error")
        return False
    if not started:
        if status:  # a start without a body message: send the head alone
            await send({"type": "http.response.body", "body": b""})
        else:
            log.error("asgi_app_sent_no_response", path=scope["path"])
            await _send_error(stream, 500, "internal error")
            return False
    return done and keep_alive

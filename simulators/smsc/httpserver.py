"""A minimal HTTP/1.1 server for ASGI apps on h11 + trio (enough for the control API).

One request at a time per connection, keep-alive, request bodies up to `MAX_BODY` octets,
whole response bodies. The app is a plain ASGI callable, so hypercorn can serve it instead
(`hypercorn --worker-class trio ...`); this server exists because it starts in microseconds
inside the simulator's own nursery and binds port 0 for tests.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import h11
import trio

MAX_BODY = 1 << 20
IDLE_TIMEOUT = 30.0


async def serve_asgi(
    app: Any, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    task_status.started(bound)
    await trio.serve_listeners(partial(_handle, app, (host, bound)), listeners)


async def _send_simple(
    stream: trio.abc.Stream, conn: h11.Connection, status: int, body: bytes
) -> None:
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("connection", "close"),
    ]
    data = conn.send(h11.Response(status_code=status, headers=headers))
    data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    await stream.send_all(data)


async def _handle(app: Any, server_addr: tuple[str, int], stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    try:
        peer = stream.socket.getpeername()
    except OSError:
        peer = ("", 0)
    try:
        while True:
            request = None
            body = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    with trio.fail_after(IDLE_TIMEOUT):
                        data = await stream.receive_some(65536)
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_BODY:
                        await _send_simple(stream, conn, 413, b'{"error":"body_too_large"}')
                        return
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
            assert request is not None
            status, headers, payload = await _call(app, request, bytes(body), server_addr, peer)
            if not any(k.lower() == b"content-length" for k, _ in headers):
                headers.append((b"content-length", str(len(payload)).encode()))
            data = conn.send(h11.Response(status_code=status, headers=headers))
            data += conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                await _send_simple(stream, conn, 400, b'{"error":"bad_request"}')
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def _call(
    app: Any, request: h11.Request, body: bytes, server_addr: tuple[str, int], peer: Any
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    target = request.target.decode("latin-1")
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.http_version.decode(),
        "method": request.method.decode(),
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.headers],
        "server": server_addr,
        "client": tuple(peer[:2]),
    }
    sent_body = False
    response: dict[str, Any] = {"status": 500, "headers": [], "body": bytearray()}

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response["status"] = message["status"]
            response["headers"] = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            response["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return response["status"], response["headers"], bytes(response["body"])

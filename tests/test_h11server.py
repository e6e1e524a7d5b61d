"""The small h11 HTTP/1.1 server under the ASGI apps, over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socket

import pytest
import trio

from gateway.api.asgi import read_body, respond
from gateway.api.h11server import serve


async def echo_app(scope, receive, send):
    if scope["path"] == "/boom":
        raise RuntimeError("app bug")
    body = await read_body(receive, scope, 1 << 20)
    await respond(
        send,
        200,
        {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(), "len": len(body)},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def server(nursery):
    port = free_port()
    stop = trio.Event()
    await nursery.start(lambda task_status: serve(echo_app, f"127.0.0.1:{port}", shutdown_trigger=stop.wait, task_status=task_status))
    return port, stop


async def exchange(port: int, raw: bytes, responses: int = 1) -> list[tuple[int, bytes]]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    out: list[tuple[int, bytes]] = []
    buf = b""
    async with stream:
        await stream.send_all(raw)
        with trio.fail_after(5):
            while len(out) < responses:
                data = await stream.receive_some(65536)
                if not data:
                    break
                buf += data
                while b"\r\n\r\n" in buf:
                    head, rest = buf.split(b"\r\n\r\n", 1)
                    status = int(head.split(b" ")[1])
                    length = int(
                        next(
                            line.split(b":")[1]
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length")
                        )
                    )
                    if len(rest) < length:
                        break
                    out.append((status, rest[:length]))
                    buf = rest[length:]
    return out


async def test_keep_alive_serves_several_requests_on_one_connection(server):
    port, _ = server
    req = b"POST /v1/x?a=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
    got = await exchange(port, req * 3, responses=3)
    assert [s for s, _ in got] == [200, 200, 200]
    assert json.loads(got[0][1]) == {"method": "POST", "path": "/v1/x", "query": "a=1", "len": 5}


async def test_chunked_request_body(server):
    port, _ = server
    req = (
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    (status, body), = await exchange(port, req)
    assert status == 200 and json.loads(body)["len"] == 7


async def test_malformed_request_gets_400(server):
    port, _ = server
    (status, body), = await exchange(port, b"THIS IS NOT HTTP\r\n\r\n")
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"


async def test_app_exception_is_a_500_not_a_crash(server):
    port, _ = server
    (status, _), = await exchange(port, b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 500
    (status, _), = await exchange(port, b"GET /fine HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200


async def test_shutdown_stops_accepting(server):
    port, stop = server
    stop.set()
    await trio.sleep(0.1)
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)

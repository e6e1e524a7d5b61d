"""The small built-in HTTP/1.1 server under the ASGI apps, over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socket

import pytest
import trio

from gateway.api.asgi import read_body, respond
from gateway.api.httpserver import serve


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
    (status, body), = await exchange(port, b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 500 and json.loads(body)["error"]["code"] == "internal_error"
    (status, _), = await exchange(port, b"GET /fine HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200


async def test_shutdown_stops_accepting(server):
    port, stop = server
    stop.set()
    await trio.sleep(0.1)
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


async def raw_exchange(port: int, raw: bytes, until_close: bool = True) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buf = b""
    async with stream:
        await stream.send_all(raw)
        with trio.fail_after(5):
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return buf
                buf += data


async def test_http10_closes_after_the_response(server):
    port, _ = server
    got = await raw_exchange(port, b"GET /x HTTP/1.0\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close\r\n" in got


async def test_connection_close_is_honoured(server):
    port, _ = server
    got = await raw_exchange(port, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert got.count(b"HTTP/1.1 200") == 1


@pytest.mark.parametrize(
    "raw, status, code",
    [
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, "http_505"),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "bad_request",
        ),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "http_501"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431, "http_431"),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n", 413, "payload_too_large"),
    ],
)
async def test_refused_requests_get_their_status_and_a_close(server, raw, status, code):
    port, _ = server
    got = await raw_exchange(port, raw)  # returns only once the server closed
    assert got.startswith(b"HTTP/1.1 %d " % status)
    body = got.split(b"\r\n\r\n", 1)[1]
    err = json.loads(body)["error"]
    assert err["message"] and err["code"] == code


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversized_body_gets_the_apis_payload_too_large(nursery, chunked):
    """The server's own 413 (before the app sees the request) has the code the API documents
    for 413, not a server-specific one."""
    port = await start(nursery, echo_app, max_body=1024)
    data = b"x" * 2048
    if chunked:
        raw = b"POST /v1/messages HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        raw += b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
    else:
        raw = b"POST /v1/messages HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(data) + data
    got = await raw_exchange(port, raw)  # returns only once the server closed
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"content-type: application/json" in head
    err = json.loads(body)["error"]
    assert err["code"] == "payload_too_large" and "1024" in err["message"]


async def test_expect_100_continue_gets_the_interim_response(server):
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        )
        with trio.fail_after(2):  # curl would wait 1 s without it
            interim = await stream.receive_some(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await stream.send_all(b"abcd")
        with trio.fail_after(2):
            final = await stream.receive_some(65536)
        assert final.startswith(b"HTTP/1.1 200 OK\r\n") and json.loads(final.split(b"\r\n\r\n")[1])["len"] == 4


async def test_head_gets_headers_without_a_body(server):
    port, _ = server
    got = await raw_exchange(port, b"HEAD /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: " in head and body == b""


async def streaming_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for part in (b"one ", b"two ", b"three"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def test_a_streamed_response_is_chunked(nursery):
    port = free_port()
    stop = trio.Event()
    await nursery.start(lambda task_status: serve(streaming_app, f"127.0.0.1:{port}", shutdown_trigger=stop.wait, task_status=task_status))
    got = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"
    stop.set()


async def start(nursery, app, **kw) -> int:
    port = free_port()
    stop = trio.Event()
    await nursery.start(
        lambda task_status: serve(app, f"127.0.0.1:{port}", shutdown_trigger=stop.wait, task_status=task_status, **kw)
    )
    return port


async def test_a_streamed_response_to_http10_ends_with_the_close(nursery):
    port = await start(nursery, streaming_app)
    got = await raw_exchange(port, b"GET / HTTP/1.0\r\n\r\n")  # returns once closed
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head and b"connection: close" in head
    assert body == b"one two three"


def fixed_app(status, headers, body):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def test_the_apps_connection_close_is_honoured(nursery):
    port = await start(nursery, fixed_app(200, [(b"connection", b"close")], b"bye"))
    got = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert got.count(b"HTTP/1.1 200") == 1


async def test_a_wrong_content_length_from_the_app_closes_the_connection(nursery):
    port = await start(nursery, fixed_app(200, [(b"content-length", b"10")], b"ab"))
    got = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert got.count(b"HTTP/1.1 200") == 1  # the second response would be read as body


async def test_no_content_length_on_204(nursery):
    port = await start(nursery, fixed_app(204, [], b""))
    got = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 204 No Content\r\n") and b"content-length" not in got


async def test_configured_body_limit_counts_chunk_overhead(nursery):
    port = await start(nursery, echo_app, max_body=4096)
    flood = b"1\r\nx\r\n" * 2000 + b"0\r\n\r\n"  # 2 KB of data, 12 KB on the wire
    got = await raw_exchange(port, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + flood)
    assert got.startswith(b"HTTP/1.1 413 ")


async def test_a_request_that_trickles_in_is_cut_off(nursery, monkeypatch):
    import gateway.api.httpserver as H

    monkeypatch.setattr(H, "REQUEST_TIMEOUT", 0.3)
    port = await start(nursery, echo_app)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    closed = False
    async with stream:
        with trio.fail_after(3):
            try:
                for piece in (b"GET / HTTP/1.1\r\n", b"Host: t\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n", b"X-C: 3\r\n", b"X-D: 4\r\n"):
                    await stream.send_all(piece)  # each within the idle timeout, never complete
                    await trio.sleep(0.1)
                closed = await stream.receive_some(100) == b""
            except trio.BrokenResourceError:
                closed = True  # the server closed while we were still sending
    assert closed

"""gateway.api.http11: the sans-IO HTTP/1.1 request reader and response framing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api.http11 import NEED_DATA, HttpError, Request, RequestReader, response_head


def read_all(data: bytes, pieces: list[int] | None = None, **kw) -> list[Request]:
    """Feed `data` (cut at `pieces` offsets) and collect every complete request."""
    r = RequestReader(**kw)
    out: list[Request] = []
    cuts = sorted(set(p for p in (pieces or []) if 0 < p < len(data)))
    start = 0
    for end in [*cuts, len(data)]:
        r.feed(data[start:end])
        start = end
        while (req := r.next_request()) is not NEED_DATA:
            out.append(req)
    return out


def one(data: bytes, **kw) -> Request:
    reqs = read_all(data, **kw)
    assert len(reqs) == 1, reqs
    return reqs[0]


def test_simple_get():
    req = one(b"GET /v1/messages/abc?x=1&y=2 HTTP/1.1\r\nHost: gw\r\nAccept: */*\r\n\r\n")
    assert (req.method, req.path, req.query, req.http_version) == ("GET", b"/v1/messages/abc", b"x=1&y=2", "1.1")
    assert req.headers == [(b"host", b"gw"), (b"accept", b"*/*")]
    assert req.body == b"" and req.keep_alive


def test_content_length_body_and_header_whitespace():
    req = one(b"POST /v1/messages HTTP/1.1\r\nHOST:gw\r\nContent-Length:   5  \r\nX-Empty:\r\n\r\nhello")
    assert req.body == b"hello"
    assert (b"x-empty", b"") in req.headers and (b"content-length", b"5") in req.headers


def test_chunked_body_with_extensions_and_trailers():
    req = one(
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"3;name=val\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    assert req.body == b"abc0123456789"


def test_pipelined_requests_come_out_in_order():
    data = (
        b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    )
    reqs = read_all(data)
    assert [(r.path, r.body) for r in reqs] == [(b"/a", b"hi"), (b"/b", b""), (b"/c", b"x")]


def test_keep_alive_rules():
    assert not one(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").keep_alive
    assert not one(b"GET / HTTP/1.0\r\n\r\n").keep_alive
    assert one(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive
    assert one(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade, keep-alive\r\n\r\n").keep_alive


def test_leading_empty_lines_and_absolute_form():
    req = one(b"\r\n\r\nGET http://gw:8080/v1/x?q=1 HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert (req.path, req.query) == (b"/v1/x", b"q=1")
    assert one(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n").path == b"*"


def test_expect_continue_is_announced_until_the_body_arrives():
    r = RequestReader()
    r.feed(b"POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert r.next_request() is NEED_DATA and r.expects_continue
    r.continue_sent()
    assert not r.expects_continue
    r.feed(b"abc")
    assert r.next_request().body == b"abc"


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"THIS IS NOT HTTP\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET / FTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET relative HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nName : x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nA: x\ry\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nA: x\x00y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: t\n\n", 400),  # bare LF line endings: refused at once
        (b"GET / HTTP/1.1\nHost: t\r\n\r\n", 400),  # a bare LF in the request line
        (b"GET / HTTP/1.1\r\nHost: t\r\nA: x\ny\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x10\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nExpect: something\r\n\r\n", 417),
    ],
)
def test_malformed_requests_are_refused_with_a_status(raw, status):
    with pytest.raises(HttpError) as e:
        read_all(raw)
    assert e.value.status == status


def test_limits():
    with pytest.raises(HttpError) as e:
        read_all(b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 2000 + b"\r\n\r\n", max_head=1024)
    assert e.value.status == 431
    with pytest.raises(HttpError) as e:  # no end of head in sight
        read_all(b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 2000, max_head=1024)
    assert e.value.status == 431
    with pytest.raises(HttpError) as e:
        read_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2049\r\n\r\n", max_body=2048)
    assert e.value.status == 413
    with pytest.raises(HttpError) as e:
        read_all(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"a" * 2048 + b"\r\n1\r\n", max_body=2048)
    assert e.value.status == 413


# ---- properties ------------------------------------------------------------------------

_token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~", min_size=1, max_size=12)
_value = st.binary(max_size=40).map(lambda b: bytes(c for c in b if c >= 0x21 and c != 0x7F))
_path = st.text("abcdefghijklmnopqrstuvwxyz0123456789/-_.~%", max_size=30).map(lambda s: "/" + s)


@st.composite
def requests(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    path = draw(_path).encode()
    query = draw(st.one_of(st.just(b""), st.text("a=b&c1", max_size=10).map(str.encode)))
    headers = [(b"host", b"gw")] + [
        (name.lower().encode(), value)
        for name, value in draw(st.lists(st.tuples(_token, _value), max_size=5))
        if name.lower() not in ("host", "content-length", "transfer-encoding", "connection", "expect")
    ]
    body = draw(st.binary(max_size=300))
    chunked = draw(st.booleans())
    chunk = draw(st.integers(1, 64))
    return method, path, query, headers, body, chunked, chunk


def serialise(method, path, query, headers, body, chunked, chunk) -> bytes:
    target = path + (b"?" + query if query else b"")
    out = [b"%s %s HTTP/1.1\r\n" % (method.encode(), target)]
    out += [b"%s: %s\r\n" % (n, v) for n, v in headers]
    if chunked:
        out.append(b"transfer-encoding: chunked\r\n\r\n")
        for i in range(0, len(body), chunk):
            part = body[i : i + chunk]
            out.append(b"%x\r\n%s\r\n" % (len(part), part))
        out.append(b"0\r\n\r\n")
    else:
        out.append(b"content-length: %d\r\n\r\n%s" % (len(body), body))
    return b"".join(out)


@given(st.lists(requests(), min_size=1, max_size=4), st.lists(st.integers(0, 4000), max_size=12))
@settings(max_examples=300)
def test_any_request_stream_cut_anywhere_reads_back(reqs, cuts):
    data = b"".join(serialise(*r) for r in reqs)
    got = read_all(data, cuts)
    assert len(got) == len(reqs)
    for req, (method, path, query, headers, body, chunked, _) in zip(got, reqs):
        assert (req.method, req.path, req.query, req.body) == (method, path, query, body)
        assert req.headers[: len(headers)] == headers
        assert req.keep_alive


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
@settings(max_examples=500)
def test_arbitrary_bytes_give_requests_or_http_error_only(data, cuts):
    try:
        read_all(data, cuts, max_head=256, max_body=256)
    except HttpError as e:
        assert 400 <= e.status < 600


@given(st.binary(max_size=200))
def test_garbage_after_a_valid_prefix_never_crashes(tail):
    try:
        read_all(b"GET / HTTP/1.1\r\nHost: t\r\n" + tail)
    except HttpError:
        pass


def test_response_head():
    head = response_head(202, [(b"content-type", b"application/json"), (b"content-length", b"2")])
    assert head == b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
    assert response_head(599, []).startswith(b"HTTP/1.1 599 Status\r\n")
    for bad in [(b"x", b"a\r\nInjected: 1"), (b"x\n", b"a"), (b"a:b", b"c"), (b"x", b"\x00")]:
        with pytest.raises(ValueError):
            response_head(200, [bad])


def test_tiny_chunks_count_what_they_cost_on_the_wire():
    """2,048 one-byte chunks are 2 KiB of data but 12 KiB on the wire: refused at 8 KiB."""
    body = b"1\r\nx\r\n" * 2048 + b"0\r\n\r\n"
    with pytest.raises(HttpError) as e:
        read_all(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body, max_body=8192)
    assert e.value.status == 413
    ok = one(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * 100 + b"0\r\n\r\n", max_body=8192)
    assert ok.body == b"x" * 100


@pytest.mark.parametrize(
    "tail",
    [
        b"0\r\nX\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",  # bare LF in a trailer
        b"0\r\nBad Trailer: 1\r\n\r\n",
        b"0\r\nT: a\x00b\r\n\r\n",
        b"1;ext=a\rb\r\nx\r\n0\r\n\r\n",  # bare CR in a chunk extension
        b"1;ext=\x00\r\nx\r\n0\r\n\r\n",
    ],
)
def test_trailers_and_chunk_extensions_are_checked(tail):
    with pytest.raises(HttpError) as e:
        read_all(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + tail)
    assert e.value.status == 400


def test_valid_trailers_are_accepted_and_dropped():
    req = one(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b c\r\nx\r\n0\r\nX-T: 1\r\n\r\n")
    assert req.body == b"x" and (b"x-t", b"1") not in req.headers


def test_http10_expect_is_ignored():
    r = RequestReader()
    r.feed(b"POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert r.next_request() is NEED_DATA and not r.expects_continue


def test_absolute_form_without_a_path():
    req = one(b"GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (req.path, req.query) == (b"/", b"q=1")

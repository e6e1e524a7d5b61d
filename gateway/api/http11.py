"""HTTP/1.1 request parsing and response framing, sans-IO (RFC 9112, server side).

`RequestReader` is fed the bytes read from a connection and hands out complete requests,
body included (Content-Length or chunked). It is strict where laxness lets a request be
read two ways (request smuggling) and bounded everywhere:

- the request line is exactly `method SP target SP HTTP/1.x`; the target is origin-form
  (`/path?query`), `*`, or absolute-form (`http://host/path`, reduced to its path);
- header lines are `token ":" OWS value OWS` with visible characters only; a folded line
  (obs-fold), a space before the colon, a bare CR or LF or a NUL is refused;
- Transfer-Encoding together with Content-Length is refused, as are differing or
  non-decimal Content-Length values and any transfer coding but `chunked`;
- HTTP/1.1 requests must carry exactly one Host header;
- the head is bounded by `max_head`, the body by `max_body`, chunk-size lines and trailers
  by `max_head` too.

Every refusal raises `HttpError` with the status to answer (400, 413, 431, 501, 505), after
which the connection must be closed: the reader's position in the stream is lost.

Why not h11: the gateway's single-message workload spent about a third of its CPU inside
h11's parser and event machinery (py-spy, docs/benchmarks.md); this parser does the same
job in a few `bytes.find` and one regex per header line.
"""

from __future__ import annotations

import re
from http import HTTPStatus

__all__ = ["NEED_DATA", "HttpError", "Request", "RequestReader", "response_head"]


class HttpError(Exception):
    """The request cannot be read; answer `status` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


class Request:
    """One complete request. Header names are lower-cased; values as received (no
    surrounding whitespace)."""

    __slots__ = ("method", "target", "path", "query", "http_version", "headers", "body", "keep_alive")

    def __init__(
        self,
        method: str,
        target: bytes,
        path: bytes,
        query: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.http_version = http_version
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target!r} HTTP/{self.http_version}, {len(self.body)} B)"


# RFC 9110 5.6.2 token; field values: visible ASCII, obs-text, SP and HTAB inside.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_METHOD = re.compile(_TOKEN)
# A field value may hold visible characters, obs-text, SP and HTAB: anything else (CR, LF,
# NUL, other controls, DEL) is refused. One C-level search per line, no backtracking.
_BAD_VALUE_CHAR = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*")
# chunk-ext (ignored) may hold visible characters, SP and HTAB only: no CR, LF or NUL
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?")
_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}

# reader states
_HEAD, _BODY, _CHUNK_HEAD, _CHUNK_DATA, _TRAILERS = range(5)


_BARE_LF = "bare LF line ending: HTTP/1.1 lines end in CRLF"


class RequestReader:
    """Feed bytes with `feed()`, take requests with `next_request()` (a `Request` or
    `NEED_DATA`). Pipelined requests are kept in order. `expects_continue` is true while a
    request head asked for `100 Continue` and its body has not arrived: the driver sends
    the interim response once (`continue_sent()`)."""

    def __init__(self, *, max_head: int = 64 * 1024, max_body: int = 8 * 1024 * 1024) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self._buf = bytearray()  # deleting a prefix of a bytearray is O(1) in CPython
        self._state = _HEAD
        self._pending: Request | None = None  # head parsed, body still coming
        self._need = 0  # body bytes still to read (Content-Length or current chunk)
        self._chunks = bytearray()
        self._body_size = 0  # bytes of a chunked body on the wire: data, size lines, trailers
        self._continue = False

    @property
    def expects_continue(self) -> bool:
        return self._continue

    def continue_sent(self) -> None:
        self._continue = False

    @property
    def pending(self) -> bool:
        """A request's head was read and its body is still coming."""
        return self._pending is not None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_request(self) -> Request | _NeedData:
        while True:
            state = self._state
            if state == _HEAD:
                req = self._read_head()
                if req is None:
                    return NEED_DATA
                if self._state == _HEAD:  # no body
                    return req
            elif state == _BODY:
                buf = self._buf
                if len(buf) < self._need:
                    return NEED_DATA
                n = self._need
                body = bytes(buf[:n])
                del buf[:n]
                return self._finish(body)
            elif state == _CHUNK_HEAD:
                if not self._read_chunk_size():
                    return NEED_DATA
            elif state == _CHUNK_DATA:
                buf = self._buf
                n = self._need
                if len(buf) < n + 2:
                    return NEED_DATA
                if buf[n : n + 2] != b"\r\n":
                    raise HttpError(400, "chunk data not followed by CRLF")
                self._chunks += buf[:n]
                del buf[: n + 2]
                self._state = _CHUNK_HEAD
            else:  # _TRAILERS: checked like header lines, then dropped
                buf = self._buf
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > self.max_head:
                        raise HttpError(431, "trailer section too large")
                    return NEED_DATA
                line = bytes(buf[:end])
                del buf[: end + 2]
                self._count(end + 2)
                if not line:
                    body = bytes(self._chunks)
                    self._chunks = bytearray()
                    return self._finish(body)
                _field(line)

    # ---- pieces ---------------------------------------------------------------------------

    def _count(self, wire_bytes: int) -> None:
        """A chunked body is bounded by what it costs on the wire, not only by its data:
        a million one-byte chunks must not be cheaper to send than to hold."""
        self._body_size += wire_bytes
        if self._body_size > self.max_body:
            raise HttpError(413, f"body larger than {self.max_body} bytes")

    def _finish(self, body: bytes) -> Request:
        req = self._pending
        assert req is not None
        req.body = body
        self._pending = None
        self._state = _HEAD
        self._continue = False
        return req

    def _read_head(self) -> Request | None:
        buf = self._buf
        # RFC 9112 2.2: ignore empty lines before a request line
        start = 0
        while buf.startswith(b"\r\n", start):
            start += 2
        end = buf.find(b"\r\n\r\n", start)
        if end < 0:
            if buf.find(b"\n\n", start) >= 0:  # a head ended by bare LFs: say so now
                raise HttpError(400, _BARE_LF)
            if len(buf) - start > self.max_head:
                raise HttpError(431, "request head too large")
            if start:
                del buf[:start]
            return None
        if end - start > self.max_head:
            raise HttpError(431, "request head too large")
        head = bytes(buf[start:end])
        del buf[: end + 4]
        if head.count(b"\n") != head.count(b"\r\n"):
            # RFC 9112 2.2 lets a recipient accept a bare LF; refusing it closes a gap two
            # parsers that split lines differently (a proxy and this server) could disagree on.
            raise HttpError(400, _BARE_LF)
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise HttpError(400, "malformed request line")
        method, target, version = parts
        http_version = _VERSIONS.get(version)
        if http_version is None:
            if version.startswith(b"HTTP/"):
                raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are served")
            raise HttpError(400, "malformed request line")
        if _METHOD.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
            raise HttpError(400, "malformed request line")
        path = target
        if not target.startswith(b"/"):
            m = _ABSOLUTE.match(target)
            if m is not None:
                path = target[m.end() :]
                if not path.startswith(b"/"):  # "http://h" or "http://h?q=1"
                    path = b"/" + path
            elif target != b"*":
                raise HttpError(400, "request target must be a path")
        path, _, query = path.partition(b"?")
        path = path.partition(b"#")[0]
        headers: list[tuple[bytes, bytes]] = []
        length: bytes | None = None
        chunked = False
        hosts = 0
        connection = b""
        expect = False
        for line in lines[1:]:
            name, value = _field(line)
            headers.append((name, value))
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    raise HttpError(400, "bad Content-Length")
                if length is not None and value != length:
                    raise HttpError(400, "conflicting Content-Length headers")
                length = value
            elif name == b"transfer-encoding":
                if chunked or value.lower() != b"chunked":
                    raise HttpError(501, "only the chunked transfer coding is supported")
                chunked = True
            elif name == b"host":
                hosts += 1
            elif name == b"connection":
                connection += b"," + value.lower()
            elif name == b"expect":
                if value.lower() != b"100-continue":
                    raise HttpError(417, "only Expect: 100-continue is supported")
                expect = True
        if http_version == "1.0":
            expect = False  # RFC 9110 10.1.1: a 1.0 client never waits for 100 Continue
        if http_version == "1.1" and hosts != 1:
            raise HttpError(400, "an HTTP/1.1 request needs exactly one Host header")
        if chunked and (length is not None or http_version == "1.0"):
            raise HttpError(400, "Transfer-Encoding with Content-Length or in HTTP/1.0")
        tokens = {t.strip() for t in connection.split(b",")} if connection else ()
        if http_version == "1.1":
            keep_alive = b"close" not in tokens
        else:
            keep_alive = b"keep-alive" in tokens
        req = Request(
            method.decode("ascii"), target, path, query, http_version, headers, b"", keep_alive
        )
        if chunked:
            self._pending = req
            self._chunks = bytearray()
            self._body_size = 0
            self._state = _CHUNK_HEAD
            self._continue = expect
            return req
        size = int(length) if length is not None else 0
        if size > self.max_body:
            raise HttpError(413, f"body larger than {self.max_body} bytes")
        if size:
            self._pending = req
            self._need = size
            self._state = _BODY
            self._continue = expect and len(self._buf) < size
        return req

    def _read_chunk_size(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > self.max_head:
                raise HttpError(400, "chunk size line too long")
            return False
        m = _CHUNK_SIZE.fullmatch(buf, 0, end)
        if m is None:
            raise HttpError(400, "malformed chunk size")
        size = int(m.group(1), 16)
        del buf[: end + 2]
        self._count(end + 2 + size + 2)
        if size == 0:
            self._state = _TRAILERS
        else:
            self._need = size
            self._state = _CHUNK_DATA
        return True


def _field(line: bytes) -> tuple[bytes, bytes]:
    """One header (or trailer) line: `token ":" OWS value OWS`; (lower-cased name, value).
    A folded line, a space before the colon, a bare CR or LF, a NUL or another control
    character is refused."""
    name, colon, value = line.partition(b":")
    if not colon or _METHOD.fullmatch(name) is None:
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "folded header lines are not accepted")
        raise HttpError(400, "malformed header line")
    value = value.strip(b" \t")
    if _BAD_VALUE_CHAR.search(value) is not None:
        raise HttpError(400, "malformed header line")
    return name.lower(), value


_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_BAD_VALUE = re.compile(rb"[\r\n\x00]")


def response_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """`HTTP/1.1 <status> <reason>` and the header lines, ending with the empty line.
    Header names and values are bytes (ASGI); a CR, LF or NUL in them is refused
    (ValueError): an app must not be able to split the response."""
    out = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Status"))]
    for name, value in headers:
        if _BAD_VALUE.search(name) or _BAD_VALUE.search(value) or b":" in name:
            raise ValueError(f"bad response header {name!r}")
        out.append(b"%s: %s\r\n" % (name, value))
    out.append(b"\r\n")
    return b"".join(out)

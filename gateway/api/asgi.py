"""Minimal ASGI plumbing shared by the tenant and admin apps: read a bounded body, answer JSON,
map every GatewayError to its HTTP status in one place."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog

from gateway.api.schemas import ErrorBody, ErrorResponse
from gateway.errors import GatewayError, InvalidBody, PayloadTooLarge

log = structlog.get_logger("gateway.api")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_encoder = msgspec.json.Encoder()


async def read_body(receive: Receive, scope: Scope, limit: int) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise PayloadTooLarge(f"body larger than {limit} bytes")
            except ValueError:
                raise InvalidBody("bad Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def decode_body(data: bytes, type_: type) -> Any:
    """JSON -> Struct; errors become InvalidBody carrying the JSON path of the bad value."""
    if not data:
        raise InvalidBody("empty body; expected JSON", path="$")
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as e:
        message, _, path = str(e).rpartition(" - at ")
        if not message:
            message, path = str(e), "$"
        raise InvalidBody(message, path=path.strip("`")) from None
    except msgspec.DecodeError as e:
        raise InvalidBody(f"malformed JSON: {e}", path="$") from None
    except UnicodeDecodeError as e:  # JSON text must be UTF-8 (RFC 8259)
        raise InvalidBody(f"the body is not UTF-8: {e.reason} at byte {e.start}", path="$") from None


async def respond(send: Send, status: int, body: Any, headers: list | None = None) -> None:
    payload = _encoder.encode(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": _JSON + [(b"content-length", str(len(payload)).encode())] + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": payload})


def error_payload(e: GatewayError) -> ErrorResponse:
    """`{"error": {"code", "message", "details"}}`. A `reason` detail that is a machine code
    (`no_route`, `client_ref_reused`) refines the code; any other reason (an SQLite error
    text) is not a code. A server-side error (5xx) shows no details: they name files and
    internals the operator's log has, not the tenant."""
    reason = e.details.get("reason")
    code = reason if type(reason) is str and _MACHINE_CODE.fullmatch(reason) else e.code
    details = None
    if e.http_status < 500:
        details = {k: v for k, v in e.details.items() if v is not None and k != "reason"} or None
    return ErrorResponse(ErrorBody(code=code, message=e.message, details=details))


_MACHINE_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


async def respond_error(send: Send, e: GatewayError) -> None:
    headers = []
    retry_after = e.details.get("retry_after")
    if retry_after is None and e.http_status == 503:
        retry_after = 1  # unavailable for now: a client may try again shortly
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, int(float(retry_after) + 0.999))).encode()))
    await respond(send, e.http_status, error_payload(e), headers)


def header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def bearer(scope: Scope) -> str | None:
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


async def serve(scope: Scope, receive: Receive, send: Send, handler: Handler) -> None:
    """The part every app shares: lifespan, HTTP only, every GatewayError mapped to its
    status here, and an unexpected exception answered 500 (logged, never leaked)."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    try:
        await handler(scope, receive, send)
    except GatewayError as e:
        await respond_error(send, e)
    except Exception:
        log.exception("api_error", path=scope.get("path"))
        await respond_error(send, GatewayError("internal error"))

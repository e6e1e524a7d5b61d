"""Tenant API (plain ASGI):

    POST /v1/messages                 send one text to one number or a batch of up to 1,000
    GET  /v1/messages/{id}            state, segments, receipts
    GET  /v1/messages?client_ref=REF  the same, by the tenant's own reference

Auth: `Authorization: Bearer <api key>`; a tenant only ever sees its own messages (another
tenant's id answers 404, exactly like an id that does not exist).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import structlog

from gateway.api.asgi import Receive, Scope, Send, bearer, decode_body, read_body, respond, serve
from gateway.api.schemas import MessageStatus, SendMessage, SendResult
from gateway.errors import BadRequest, MethodNotAllowed, NotFound
from gateway.service import Gateway

log = structlog.get_logger("gateway.api")
_MESSAGE_PATH = re.compile(r"^/v1/messages/([0-9a-f]{1,64})$")


class TenantApp:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(scope, receive, send, self._route)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/v1/messages":
            if method == "POST":
                await self._send(scope, receive, send)
            elif method == "GET":
                await self._by_ref(scope, send)
            else:
                raise MethodNotAllowed(f"{method} not allowed on {path}")
            return
        m = _MESSAGE_PATH.match(path)
        if m:
            if method != "GET":
                raise MethodNotAllowed(f"{method} not allowed on {path}")
            tenant = self.gw.authenticate(bearer(scope))
            view = await self.gw.message(tenant, m.group(1))
            if view is None:
                raise NotFound("no such message")
            await respond(send, 200, MessageStatus.of(view.message, view.segments))
            return
        if path == "/healthz":
            await respond(send, 200, {"ok": True})
            return
        raise NotFound(f"no endpoint {path}")

    async def _send(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant = self.gw.authenticate(bearer(scope))
        raw = await read_body(receive, scope, self.gw.cfg.listeners.max_body_bytes)
        body = decode_body(raw, SendMessage)
        accepted = await self.gw.accept(tenant, body)
        await respond(send, 202, SendResult(messages=accepted))

    async def _by_ref(self, scope: Scope, send: Send) -> None:
        tenant = self.gw.authenticate(bearer(scope))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        refs = query.get("client_ref")
        if not refs or len(refs) != 1 or not refs[0]:
            raise BadRequest("give exactly one client_ref query parameter")
        view = await self.gw.message_by_ref(tenant, refs[0])
        if view is None:
            raise NotFound("no message with that client_ref")
        await respond(send, 200, MessageStatus.of(view.message, view.segments))

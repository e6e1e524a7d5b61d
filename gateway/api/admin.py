"""Admin API (plain ASGI, loopback by default): stats and reload for the operations team.

    GET  /admin/stats    channels (binds, queues, rates), open messages by state, store counters
    GET  /admin/stats/store  the store writer's counters only (no database read: cheap to poll)
    POST /admin/reload   re-read the config file; 200 with the applied diff, or 400 with the
                         config error and its path (the running config is left untouched)
    GET  /healthz        liveness;  GET /readyz  200 once recovery is done and a channel is up
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from gateway.api.asgi import Receive, Scope, Send, respond, serve
from gateway.config import ConfigDiff
from gateway.errors import MethodNotAllowed, NotFound
from gateway.service import Gateway

Reload = Callable[[], Awaitable[ConfigDiff]]


class AdminApp:
    def __init__(self, gateway: Gateway, reload: Reload) -> None:
        self.gw = gateway
        self.reload = reload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(scope, receive, send, self._route)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/admin/stats":
            if method != "GET":
                raise MethodNotAllowed(f"{method} not allowed on {path}")
            await respond(send, 200, await self.gw.snapshot())
        elif path == "/admin/stats/store":
            if method != "GET":
                raise MethodNotAllowed(f"{method} not allowed on {path}")
            await respond(send, 200, self.gw.store_stats())
        elif path == "/admin/reload":
            if method != "POST":
                raise MethodNotAllowed(f"{method} not allowed on {path}")
            d = await self.reload()
            await respond(send, 200, {"applied": msgspec.to_builtins(d)})
        elif path == "/healthz":
            await respond(send, 200, {"ok": True})
        elif path == "/readyz":
            ready = self.gw.started.is_set() and any(c.up for c in self.gw.channels.values())
            await respond(send, 200 if ready else 503, {"ready": ready})
        else:
            raise NotFound(f"no endpoint {path}")

"""Control API of the simulator: a plain ASGI app (served by gateway.api.httpserver).

    GET  /health                  {"status": "ok"}
    GET  /stats                   counters (the same as the exit summary)
    POST /mo                      {"account", "source_addr", "destination_addr", "text"} -> 202
    GET  /faults/{account}        the account's fault personality
    POST /faults/{account}        switch it: the body is a whole personality, fields left out
                                  are off ({} clears every fault) -> 200 with the new one

Errors are JSON {"error": code, "detail": text}; validation errors name the path
(`Expected `float` <= 1.0 - at `$.queue_full``) and change nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import trio

from gateway.api.httpserver import serve
from gateway.smpp.errors import SmppError
from simulators.smsc.config import ConfigError, parse_faults

if TYPE_CHECKING:
    from simulators.smsc.server import SmscServer


class MoRequest(msgspec.Struct, forbid_unknown_fields=True):
    account: str
    source_addr: str
    destination_addr: str
    text: str


_json = msgspec.json.Encoder()


class ControlApp:
    def __init__(self, server: SmscServer) -> None:
        self.server = server

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Served by gateway.api.httpserver, which sends http scopes only (no lifespan).
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, payload = self.route(scope["method"], scope["path"], body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": _json.encode(payload)})

    def route(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts == ["health"]:
            return 200, {"status": "ok"}
        if parts == ["stats"]:
            if method != "GET":
                return 405, {"error": "method_not_allowed"}
            return 200, self.server.snapshot()
        if parts == ["mo"]:
            if method != "POST":
                return 405, {"error": "method_not_allowed"}
            return self._mo(body)
        if len(parts) == 2 and parts[0] == "faults":
            account = parts[1]
            if account not in self.server.accounts:
                return 404, {"error": "unknown_account", "detail": account}
            if method == "GET":
                return 200, self.server.accounts[account].faults.cfg
            if method == "POST":
                return self._faults(account, body)
            return 405, {"error": "method_not_allowed"}
        return 404, {"error": "not_found"}

    def _mo(self, body: bytes) -> tuple[int, Any]:
        try:
            req = msgspec.json.decode(body, type=MoRequest)
        except msgspec.ValidationError as e:
            return 400, {"error": "invalid_request", "detail": str(e)}
        except msgspec.DecodeError as e:
            return 400, {"error": "invalid_json", "detail": str(e)}
        if req.account not in self.server.accounts:
            return 404, {"error": "unknown_account", "detail": req.account}
        try:
            segments = self.server.inject_mo(
                req.account, req.source_addr, req.destination_addr, req.text
            )
        except (SmppError, ValueError) as e:
            return 422, {"error": "invalid_mo", "detail": str(e)}
        return 202, {"queued": True, "segments": segments}

    def _faults(self, account: str, body: bytes) -> tuple[int, Any]:
        try:
            data = msgspec.json.decode(body or b"{}")
        except msgspec.DecodeError as e:
            return 400, {"error": "invalid_json", "detail": str(e)}
        try:
            faults = parse_faults(data)
        except ConfigError as e:
            return 400, {"error": "invalid_faults", "detail": str(e)}
        self.server.set_faults(account, faults)
        return 200, faults


async def serve_control(
    server: SmscServer, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; `task_status.started` gets the bound port."""

    async def started(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(ControlApp(server), f"{host}:{port}", shutdown_trigger=trio.sleep_forever, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(started)
        task_status.started(int(binds[0].rsplit(":", 1)[1]))

"""Shared set-up for gateway tests: a config around a scripted SMSC, an in-process ASGI
client, and waiting helpers with bounded time."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import trio

from gateway import config as C
from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag
from tests.scripted_smsc import Conn, accept

API_KEY = "sk_test_key"
OTHER_KEY = "sk_other_key"


def gateway_config(db: Path, channels: list[tuple[str, int]], extra: str = "", **channel_kw) -> C.Config:
    """Channels named by (name, port) on 127.0.0.1; one catch-all route over all of them in
    order; two tenants (`t` with API_KEY, `u` with OTHER_KEY)."""
    return C.parse(gateway_config_text(db, channels, extra, **channel_kw))


def gateway_config_text(
    db: Path,
    channels: list[tuple[str, int]],
    extra: str = "",
    listeners: str = "",
    store: str = "",
    **channel_kw,
) -> str:
    parts = [listeners, f'[store]\npath = "{db}"\nbatch_wait_ms = 1.0\n{store}']
    for name, port in channels:
        kw = {
            "reconnect_min": 0.05,
            "reconnect_max": 0.2,
            "response_timeout": 2.0,
            "message_id_format": "hex",
            "receipt_id_format": "hex",
            **channel_kw,
        }
        opts = "\n".join(f"{k} = {json.dumps(v)}" for k, v in kw.items())
        parts.append(
            f'[[channels]]\nname = "{name}"\nport = {port}\nsystem_id = "gw"\npassword = "secret"\n{opts}\n'
        )
    parts.append(f"[[routes]]\nchannels = {json.dumps([n for n, _ in channels])}\n")
    parts.append(
        f'[[tenants]]\nid = "t"\napi_key_hash = "{C.hash_api_key(API_KEY)}"\ntps = 10000\n'
        f'[[tenants]]\nid = "u"\napi_key_hash = "{C.hash_api_key(OTHER_KEY)}"\ntps = 10000\n'
    )
    parts.append(extra)
    return "\n".join(parts)


def accept_with_receipt(stat: str = "DELIVRD", state: int = 2) -> Callable[[Conn, P.Pdu], list[P.Pdu]]:
    """Scripted SMSC reaction: answer submit_sm and send its receipt right after."""

    def react(conn: Conn, pdu: P.Pdu) -> list[P.Pdu]:
        out = accept(conn, pdu)
        mid = out[0].message_id
        text = (
            f"id:{mid} sub:001 dlvrd:001 submit date:2611260101 done date:2611260101 "
            f"stat:{stat} err:000 text:"
        )
        receipt = P.DeliverSm(
            esm_class=0x04,
            short_message=text.encode(),
            tlvs=[P.Tlv(Tag.RECEIPTED_MESSAGE_ID, mid), P.Tlv(Tag.MESSAGE_STATE, state)],
        )
        return out + [receipt]

    return react


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)


class AsgiClient:
    """Calls an ASGI app in-process: the app is tested without a socket in between."""

    def __init__(self, app) -> None:
        self.app = app

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | dict | None = None,
        key: str | None = API_KEY,
        query: str = "",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[int, dict]:
        raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        hdrs = list(headers or [])
        if key is not None:
            hdrs.append((b"authorization", f"Bearer {key}".encode()))
        hdrs.append((b"content-length", str(len(raw)).encode()))
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query.encode(),
            "headers": hdrs,
        }
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                await trio.sleep_forever()
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        out: dict = {}

        async def send(message):
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
                out["headers"] = dict(message["headers"])
            else:
                out["body"] = out.get("body", b"") + message.get("body", b"")

        await self.app(scope, receive, send)
        self.last_headers = out.get("headers", {})  # of the last response
        return out["status"], json.loads(out["body"])

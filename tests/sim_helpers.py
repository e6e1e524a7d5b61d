"""Shared helpers for the SMSC simulator tests: start a simulator on an ephemeral port."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from simulators.client import EsmeClient
from simulators.smsc.config import Account, Config, Server
from simulators.smsc.server import SmscServer


def make_config(accounts: list[dict[str, Any]] | None = None, **server: Any) -> Config:
    """A Config from plain dicts (validated like a TOML file), port 0 and quiet defaults."""
    base = {"port": 0, "enquire_link_interval": 0.0, "log_level": "warning"}
    base.update(server)
    if accounts is None:
        accounts = [{"system_id": "test", "password": "secret"}]
    return msgspec.convert({"server": base, "accounts": accounts}, Config)


def account(system_id: str = "test", password: str = "secret", **kw: Any) -> dict[str, Any]:
    return {"system_id": system_id, "password": password, **kw}


@asynccontextmanager
async def simulator(cfg: Config | None = None, **server: Any):
    cfg = cfg if cfg is not None else make_config(**server)
    srv = SmscServer(cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(srv.run)
        try:
            yield srv
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def esme(
    srv: SmscServer,
    bind_type: str | None = "transceiver",
    system_id: str = "test",
    password: str = "secret",
    **kw: Any,
):
    client = await EsmeClient.connect("127.0.0.1", srv.port, **kw)
    async with client:
        if bind_type is not None:
            await client.bind(bind_type, system_id, password)
        yield client


async def wait_for(predicate, timeout: float = 5.0, step: float = 0.005) -> None:
    """Poll a condition (bounded)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)


__all__ = ["Account", "Server", "account", "esme", "make_config", "simulator", "wait_for"]

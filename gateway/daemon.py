"""The daemon: one trio.run holding the gateway, its two HTTP listeners and the signals.

SIGHUP reloads the config file (validated first: a bad file is logged with its path and
changes nothing); SIGTERM/SIGINT drain (in-flight segments finish, binds unbind, queued
messages stay queued in the store for the next start) and exit. With systemd
(Type=notify) it reports READY=1, RELOADING=1 and STOPPING=1 on $NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from functools import partial
from pathlib import Path

import structlog
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from gateway import config as C
from gateway import gctune
from gateway import logs
from gateway.api.admin import AdminApp
from gateway.api.httpserver import serve as builtin_serve
from gateway.api.tenant import TenantApp
from gateway.errors import ConfigError
from gateway.service import Gateway
from gateway.store.sqlite import SqliteStore

log = structlog.get_logger("gateway.daemon")
GIL_SWITCH_INTERVAL = 0.0001  # seconds (CPython's default is 0.005)


def sd_notify(state: str) -> None:
    """Tell systemd about our state; silently nothing when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError:
        pass


def _hyper_config(bind: str) -> HyperConfig:
    hc = HyperConfig()
    hc.bind = [bind]
    hc.accesslog = None
    hc.errorlog = None
    hc.keep_alive_timeout = 75
    return hc


class Daemon:
    def __init__(self, config_path: str | Path) -> None:
        self.config_path = Path(config_path)
        self.cfg = C.load(self.config_path)
        self.gateway: Gateway | None = None
        self._stop = trio.Event()
        self.stopped = trio.Event()  # set once run() has drained and closed everything

    async def reload(self) -> C.ConfigDiff:
        """Re-read and apply the config file. Raises ConfigError, changing nothing."""
        assert self.gateway is not None
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = C.load(self.config_path)
            if new.store != self.cfg.store or new.listeners != self.cfg.listeners:
                raise ConfigError(
                    "store and listeners cannot change on reload; restart the service", "$"
                )
            d = await self.gateway.apply_config(new)
            self.cfg = new
            return d
        except ConfigError as e:
            log.error("reload_refused", error=str(e), path=e.path)
            raise
        finally:
            sd_notify("READY=1")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.cfg
        Path(cfg.store.path).parent.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(cfg.store)
        self.gateway = gw = Gateway(cfg, store)
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            shutdown = trio.Event()
            for app, bind in (
                (TenantApp(gw), cfg.listeners.api),
                (AdminApp(gw, self.reload), cfg.listeners.admin),
            ):
                if cfg.listeners.server in ("builtin", "h11"):
                    server = partial(
                        builtin_serve,
                        app,
                        bind,
                        shutdown_trigger=shutdown.wait,
                        max_body=cfg.listeners.max_body_bytes,
                    )
                else:
                    server = partial(serve, app, _hyper_config(bind), shutdown_trigger=shutdown.wait)
                await nursery.start(server)
            nursery.start_soon(self._signals)
            log.info(
                "gateway_started",
                api=cfg.listeners.api,
                admin=cfg.listeners.admin,
                channels=[c.name for c in cfg.channels],
                recovered=gw.recovered,
            )
            sd_notify("READY=1")
            task_status.started()
            await self._stop.wait()
            sd_notify("STOPPING=1")
            log.info("gateway_stopping")
            shutdown.set()
            await gw.drain()
            nursery.cancel_scope.cancel()
        log.info("gateway_stopped")
        self.stopped.set()

    def stop(self) -> None:
        self._stop.set()

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    try:
                        await self.reload()
                    except ConfigError:
                        pass  # logged; the running config stays
                else:
                    self.stop()
                    return


def run(config_path: str) -> int:
    try:
        cfg = C.load(config_path)
    except ConfigError as e:
        print(f"config error: {e}")
        return 2
    logs.configure(cfg.logging.format, cfg.logging.level)
    # With the writer in a thread (`[store] writer = "thread"`), it must get the GIL back
    # after each SQLite call while the trio thread is busy. With the default 5 ms interval
    # it can starve: the busy thread's brief releases (every syscall) keep waking it without
    # ever letting its wait time out, so no switch is forced (docs/architecture.md, "GIL
    # switch interval"). The writer process has its own GIL: the default interval stays.
    if cfg.store.writer == "thread":
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    gctune.tune()
    daemon = Daemon(config_path)
    trio.run(daemon.run)
    return 0

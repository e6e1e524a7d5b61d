"""The daemon: one trio.run holding the gateway, its two HTTP listeners and the signals.

SIGHUP reloads the config file (validated first: a bad file is logged with its path and
changes nothing; a reload that fails in any other way is logged too and never stops the
daemon); SIGTERM/SIGINT drain (in-flight segments finish, binds unbind, queued
messages stay queued in the store for the next start) and exit. With systemd
(Type=notify) it reports READY=1, RELOADING=1 and STOPPING=1 on $NOTIFY_SOCKET.
"""

from __future__ import annotations

import contextlib
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
from gateway.errors import ConfigError, GatewayError
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


class ReloadFailed(GatewayError):
    """A reload that failed other than by a bad file (a bug, an I/O error): logged as
    `reload_failed`; the daemon keeps running."""

    code = "reload_failed"
    http_status = 500


def reload_refusal(old: C.Config, new: C.Config, file: str | None = None) -> ConfigError | None:
    """A valid config that a reload must not apply: one that would stop every channel or
    drop every tenant of a running gateway. It is what an empty or truncated file (a
    half-written deploy, an editor's crash) decodes to, and applying it would take the whole
    service down with a "successful" reload. A restart with such a file is allowed."""
    lost = []
    if any(c.enabled for c in old.channels) and not any(c.enabled for c in new.channels):
        lost.append("channels")
    if old.tenants and not new.tenants:
        lost.append("tenants")
    if not lost:
        return None
    return ConfigError(
        f"the new config has no {'/'.join(lost)}; refusing to stop everything:"
        " use a restart if that is what you want",
        "$",
        file,
    )


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
        self.started = False  # run() has started everything (listeners bound, READY=1)

    async def reload(self) -> C.ConfigDiff:
        """Re-read and apply the config file. Raises ConfigError (a file refused: nothing
        changed) or ReloadFailed (anything else went wrong; logged as `reload_failed`).
        Never anything else: a reload must not take the daemon down."""
        assert self.gateway is not None
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = C.load(self.config_path)
            if new.store != self.cfg.store or new.listeners != self.cfg.listeners:
                raise ConfigError(
                    "store and listeners cannot change on reload; restart the service", "$"
                )
            refusal = reload_refusal(self.cfg, new, str(self.config_path))
            if refusal is not None:
                raise refusal
            d = await self.gateway.apply_config(new)
            self.cfg = new
            return d
        except ConfigError as e:
            log.error("reload_refused", error=str(e), path=e.path)
            raise
        except Exception as e:
            # self.cfg stays the running config. (If apply_config failed half way, what it
            # had applied stays applied: the next good reload diffs against that.)
            log.exception("reload_failed", error=f"{type(e).__name__}: {e}")
            raise ReloadFailed(
                f"reload failed: {type(e).__name__}: {e}; the running config stays"
            ) from e
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
            for warning in C.warnings(cfg):
                log.warning("config_warning", warning=warning)
            sd_notify("READY=1")
            self.started = True
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
                    # a ConfigError or ReloadFailed, logged by reload(): the running
                    # config stays, and the daemon runs on
                    with contextlib.suppress(Exception):
                        await self.reload()
                else:
                    self.stop()
                    return


def startup_errors(exc: BaseException) -> list[GatewayError] | None:
    """The GatewayErrors `exc` consists of: itself, or every leaf of the (nested) exception
    group trio wraps a failing task's error in. None when anything else is in there (a bug:
    its traceback is wanted)."""
    if isinstance(exc, GatewayError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found: list[GatewayError] = []
        for sub in exc.exceptions:
            errors = startup_errors(sub)
            if errors is None:
                return None
            found.extend(errors)
        return found or None
    return None


def run(config_path: str) -> int:
    """`smpp-gateway run`. A typed error at startup (a bad config, a read-only or too new
    store, ...) is printed as one line `startup failed: <message> (<code>)` on stderr, exit
    status 2 for a config error and 1 for the others; any other exception keeps its
    traceback."""
    try:
        cfg = C.load(config_path)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
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
    daemon: Daemon | None = None
    try:
        daemon = Daemon(config_path)
        trio.run(daemon.run)
    except BaseException as e:  # re-raised unless all typed
        errors = startup_errors(e)
        if errors is None or (daemon is not None and daemon.started):
            raise
        for error in errors:
            print(f"startup failed: {error.message} ({error.code})", file=sys.stderr)
        return 2 if all(isinstance(error, ConfigError) for error in errors) else 1
    return 0

"""Gateway configuration: TOML decoded into msgspec Structs, validated, diffed on reload.

The Structs below are the one definition of every config section. msgspec rejects unknown
fields and wrong types with the exact path (`$.channels[1].tps`); `validate()` adds the
cross-field rules (route targets exist, names unique, ...) with paths in the same form. A
file that fails either check raises ConfigError and changes nothing: `load()` builds a new
`Config` and the caller swaps it in only on success.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path
from typing import Literal

import msgspec

from gateway.errors import ConfigError
from gateway.smpp.esme import EsmeSettings
from gateway.smpp.receipt import IdFormat

Category = Literal["otp", "notification", "marketing"]
CATEGORIES: tuple[Category, ...] = ("otp", "notification", "marketing")
Concatenation = Literal["udh8", "udh16", "sar", "payload"]
SubmittingRecovery = Literal["resubmit", "unknown"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOST_PORT = re.compile(r"^(?P<host>[^:\s]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


class _Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class Listeners(_Base, kw_only=True):
    """Where the HTTP APIs listen. Loopback by default: expose them deliberately."""

    api: str = "127.0.0.1:8080"
    admin: str = "127.0.0.1:8081"
    max_body_bytes: int = 1_048_576
    # The HTTP server under the (plain ASGI) apps: the small built-in server in
    # gateway/api/httpserver.py (HTTP/1.1; a fraction of hypercorn's CPU per request,
    # docs/architecture.md), or
    # hypercorn's trio worker (HTTP/2, TLS termination).
    # "h11" is the built-in server's former name: configs written with it still load.
    server: Literal["builtin", "hypercorn", "h11"] = "builtin"


class StoreConfig(_Base, kw_only=True):
    path: str = "state/gateway.db"
    batch_max: int = 1000  # rows per group commit, for progress and for intake inserts each
    batch_wait_ms: float = 2.0  # how long the writer waits to fill a batch
    # where batches execute: a writer process of its own (python -m
    # gateway.store.sqlite_writer, fed over a pipe; own GIL) or a worker thread of the
    # gateway (shares its GIL). Process by default: docs/architecture.md (measured)
    writer: Literal["thread", "process"] = "process"


class LoggingConfig(_Base, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console", "auto"] = "auto"


class ChannelConfig(EsmeSettings, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One SMSC account: its binds, its queue, its limits. The connection and bind fields
    (host, port, system_id, password, bind_mode, window, timeouts, TLS, ...) come from
    EsmeSettings; these are the channel's own."""

    name: str
    binds: int = 1
    tps: float = 100.0
    burst: float | None = None  # token bucket depth; default: max(1, tps / 10)
    message_id_format: IdFormat = "string"  # how the SMSC writes ids in submit_sm_resp
    receipt_id_format: IdFormat = "string"  # ... and in receipts
    concatenation: Concatenation = "udh8"
    allow_latin1: bool = False
    source_addr: str | None = None  # sender when the tenant gives none
    source_addr_ton: int | None = None  # None: chosen from the address (alnum -> 5/0, else 1/1)
    source_addr_npi: int | None = None
    registered_delivery: bool = True
    validity_seconds: int = 86_400  # message expires if not submitted/delivered by then
    max_attempts: int = 10  # submit attempts per segment before the message fails
    on_submitting_recovery: SubmittingRecovery = "resubmit"
    enabled: bool = True

    def esme_settings(self) -> EsmeSettings:
        """The bind settings alone (what one EsmeClient needs)."""
        return EsmeSettings(**{f: getattr(self, f) for f in EsmeSettings.__struct_fields__})

    @property
    def bucket_depth(self) -> float:
        """The token bucket depth in effect: `burst`, else max(1, tps / 10). The one rule,
        used by the channel's throttle and by the printed config (masked)."""
        return self.burst if self.burst is not None else max(1.0, self.tps / 10)

    def connection_key(self) -> tuple:
        """Fields whose change needs new binds: every bind setting but the window (which
        is retuned in place). Everything else of the channel is retuned in place too."""
        return tuple(getattr(self, f) for f in EsmeSettings.__struct_fields__ if f != "window")


class RouteConfig(_Base, kw_only=True):
    """Destination prefix (+ optional categories) -> channels in failover order."""

    prefix: str = ""  # "" matches every destination
    categories: list[Category] = []  # empty: every category
    channels: list[str]


class TenantConfig(_Base, kw_only=True):
    id: str
    api_key_hash: str  # from `smpp-gateway hash-key`
    tps: float = 50.0
    daily_quota: int = 100_000  # messages (not segments) per UTC day
    categories: list[Category] = msgspec.field(default_factory=lambda: list(CATEGORIES))
    default_source_addr: str | None = None
    enabled: bool = True


class Config(_Base, kw_only=True):
    listeners: Listeners = Listeners()
    store: StoreConfig = StoreConfig()
    logging: LoggingConfig = LoggingConfig()
    channels: list[ChannelConfig] = []
    routes: list[RouteConfig] = []
    tenants: list[TenantConfig] = []

    def channel(self, name: str) -> ChannelConfig | None:
        for c in self.channels:
            if c.name == name:
                return c
        return None


# ---------------------------------------------------------------------------------------
# Loading and validation


def parse(text: str | bytes, file: str | None = None) -> Config:
    """Decode + validate. Raises ConfigError naming the path of the first bad value."""
    try:
        cfg = msgspec.toml.decode(text, type=Config)
    except msgspec.ValidationError as e:
        message, _, path = str(e).rpartition(" - at ")
        if not message:
            message, path = str(e), "$"
        raise ConfigError(message, path.strip("`"), file) from None
    except msgspec.DecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", "$", file) from None
    validate(cfg, file)
    return cfg


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config: {e.strerror}", "$", str(p)) from None
    return parse(text, str(p))


def _host_port(value: str, path: str, file: str | None) -> None:
    m = _HOST_PORT.match(value)
    if not m or not 0 < int(m["port"]) < 65536:
        raise ConfigError(f"expected host:port, got {value!r}", path, file)


def validate(cfg: Config, file: str | None = None) -> None:
    def bad(message: str, path: str) -> None:
        raise ConfigError(message, path, file)

    _host_port(cfg.listeners.api, "$.listeners.api", file)
    _host_port(cfg.listeners.admin, "$.listeners.admin", file)
    if cfg.listeners.max_body_bytes < 1024:
        bad("must be at least 1024", "$.listeners.max_body_bytes")
    if cfg.store.batch_max < 1:
        bad("must be at least 1", "$.store.batch_max")
    if not 0 <= cfg.store.batch_wait_ms <= 1000:
        bad("must be between 0 and 1000", "$.store.batch_wait_ms")

    names: set[str] = set()
    for i, ch in enumerate(cfg.channels):
        p = f"$.channels[{i}]"
        if not _NAME.match(ch.name):
            bad("channel names are 1-64 of A-Z a-z 0-9 _ . -", f"{p}.name")
        if ch.name in names:
            bad(f"duplicate channel name {ch.name!r}", f"{p}.name")
        names.add(ch.name)
        if not 0 < ch.port < 65536:
            bad("must be 1..65535", f"{p}.port")
        if not 1 <= ch.binds <= 64:
            bad("must be 1..64", f"{p}.binds")
        if not 1 <= ch.window <= 1024:
            bad("must be 1..1024", f"{p}.window")
        if not 0 < ch.tps <= 100_000:
            bad("must be > 0 and <= 100000", f"{p}.tps")
        if ch.burst is not None and ch.burst < 1:
            bad("must be >= 1", f"{p}.burst")
        if ch.response_timeout <= 0:
            bad("must be > 0", f"{p}.response_timeout")
        for field in (
            "enquire_link_interval",
            "connect_timeout",
            "reconnect_min",
            "reconnect_max",
            "bind_failure_backoff",
            "unbind_timeout",
        ):
            if getattr(ch, field) <= 0:
                bad("must be > 0", f"{p}.{field}")
        if ch.reconnect_min > ch.reconnect_max:
            bad("must not exceed reconnect_max", f"{p}.reconnect_min")
        if ch.deliver_batch_max < 1:
            bad("must be >= 1", f"{p}.deliver_batch_max")
        for field in ("addr_ton", "addr_npi"):
            if not 0 <= getattr(ch, field) <= 255:
                bad("must be 0..255", f"{p}.{field}")
        if len(ch.system_id) > 15:
            bad("at most 15 characters (SMPP 3.4)", f"{p}.system_id")
        if len(ch.password) > 16:
            bad("at most 16 characters", f"{p}.password")
        if ch.max_attempts < 1:
            bad("must be >= 1", f"{p}.max_attempts")
        if ch.validity_seconds < 60:
            bad("must be >= 60", f"{p}.validity_seconds")
        if ch.source_addr is not None and not 0 < len(ch.source_addr) <= 20:
            bad("1..20 characters", f"{p}.source_addr")
        for field in ("source_addr_ton", "source_addr_npi"):
            v = getattr(ch, field)
            if v is not None and not 0 <= v <= 255:
                bad("must be 0..255", f"{p}.{field}")

    for i, r in enumerate(cfg.routes):
        p = f"$.routes[{i}]"
        if r.prefix and not r.prefix.isdigit():
            bad("a destination prefix is digits only", f"{p}.prefix")
        if not r.channels:
            bad("a route needs at least one channel", f"{p}.channels")
        for j, name in enumerate(r.channels):
            if name not in names:
                bad(f"unknown channel {name!r}", f"{p}.channels[{j}]")

    ids: set[str] = set()
    for i, t in enumerate(cfg.tenants):
        p = f"$.tenants[{i}]"
        if not _NAME.match(t.id):
            bad("tenant ids are 1-64 of A-Z a-z 0-9 _ . -", f"{p}.id")
        if t.id in ids:
            bad(f"duplicate tenant id {t.id!r}", f"{p}.id")
        ids.add(t.id)
        if not is_key_hash(t.api_key_hash):
            bad("expected sha256:<64 hex digits> (use `smpp-gateway hash-key`)", f"{p}.api_key_hash")
        if t.tps <= 0:
            bad("must be > 0", f"{p}.tps")
        if t.daily_quota < 0:
            bad("must be >= 0", f"{p}.daily_quota")


# ---------------------------------------------------------------------------------------
# API keys: random tokens, so a fast hash is enough (no dictionary to attack); compared in
# constant time.

_KEY_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def hash_api_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def is_key_hash(value: str) -> bool:
    return bool(_KEY_HASH.match(value))


def key_matches(key: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), key_hash)


def new_api_key() -> str:
    return "sk_" + secrets.token_urlsafe(32)


# ---------------------------------------------------------------------------------------
# Reload diff


class ConfigDiff(msgspec.Struct, frozen=True):
    added: tuple[str, ...] = ()  # channels to start
    removed: tuple[str, ...] = ()  # channels to drain and stop
    reconnect: tuple[str, ...] = ()  # connection settings changed: new binds
    retuned: tuple[str, ...] = ()  # limits changed: applied in place
    routes_changed: bool = False
    tenants_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.reconnect
            or self.retuned
            or self.routes_changed
            or self.tenants_changed
        )


def diff(old: Config, new: Config) -> ConfigDiff:
    # A disabled channel is as good as absent: `enabled = false` + reload stops it.
    old_ch = {c.name: c for c in old.channels if c.enabled}
    new_ch = {c.name: c for c in new.channels if c.enabled}
    added = tuple(n for n in new_ch if n not in old_ch)
    removed = tuple(n for n in old_ch if n not in new_ch)
    reconnect, retuned = [], []
    for name in new_ch.keys() & old_ch.keys():
        a, b = old_ch[name], new_ch[name]
        if a == b:
            continue
        if a.connection_key() != b.connection_key():
            reconnect.append(name)
        else:
            retuned.append(name)
    return ConfigDiff(
        added=added,
        removed=removed,
        reconnect=tuple(sorted(reconnect)),
        retuned=tuple(sorted(retuned)),
        routes_changed=old.routes != new.routes,
        tenants_changed=old.tenants != new.tenants,
    )


def masked(cfg: Config) -> dict:
    """The effective config as plain data with secrets replaced (for check-config, logs).
    A channel's `burst` is the bucket depth its throttle uses (`bucket_depth`), never null."""
    data = msgspec.to_builtins(cfg)
    for channel, ch in zip(cfg.channels, data["channels"], strict=True):
        ch["password"] = "***"
        ch["burst"] = channel.bucket_depth
    for t in data["tenants"]:
        t["api_key_hash"] = t["api_key_hash"][:14] + "..."
    return data

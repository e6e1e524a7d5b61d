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
import math
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

# A sender (source_addr) that every submit_sm can carry: 1..20 printable ASCII characters
# (0x20-0x7E), not starting or ending with a space. The field is a C-Octet String of at most
# 21 octets (20 + NUL) and the PDU encoder writes it in Latin-1; printable ASCII is the part
# of that every SMSC reads the same way (control characters and a NUL would cut or corrupt
# it). Numbers are the digits-with-optional-"+" subset of it (TON/NPI follow from the form,
# gateway.submission.source_ton_npi). The tenant API (`sender`) and the config
# (`default_source_addr`, `source_addr`) use this one pattern.
SENDER_MAX = 20
SENDER_PATTERN = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"
_SENDER = re.compile(SENDER_PATTERN)
SENDER_RULE = "1..20 printable ASCII characters (0x20-0x7E), no leading or trailing space"


def is_valid_sender(value: str) -> bool:
    return len(value) <= SENDER_MAX and bool(_SENDER.match(value))


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
    # rows per group commit, for progress and for intake inserts each (3000: measured with
    # the receipt journal, docs/architecture.md "Writer batches of 3,000 rows")
    batch_max: int = 3000
    batch_wait_ms: float = 2.0  # how long the writer waits to fill a batch
    # where batches execute: a writer process of its own (python -m
    # gateway.store.sqlite_writer, fed over a pipe; own GIL) or a worker thread of the
    # gateway (shares its GIL). Process by default: docs/architecture.md (measured)
    writer: Literal["thread", "process"] = "process"
    # Receipts are acknowledged to the SMSC once durable in an append-only journal beside
    # the database (`<path>.receipts.*`), and stored by the next group commit; false: once
    # committed (slower under load: the SMSC's window of unanswered receipts fills).
    # docs/architecture.md, "Receipt journal".
    receipt_journal: bool = True


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
    except UnicodeDecodeError as e:
        # msgspec.toml decodes bytes as UTF-8 itself and lets this one through
        line = e.object.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"not UTF-8: byte 0x{e.object[e.start]:02x} on line {line} cannot be decoded"
            " (save the file as UTF-8)",
            "$",
            file,
        ) from None
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


def _range_error(value: float, lo: float, hi: float, lo_open: bool) -> str | None:
    """Why `value` is not a finite number within lo..hi (or lo exclusive), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    if (value <= lo if lo_open else value < lo) or value > hi:
        return f"must be {'>' if lo_open else '>='} {_num(lo)} and <= {_num(hi)}"
    return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# Channel fields in seconds (the EsmeSettings ones included): finite, > 0, at most a day.
_CHANNEL_SECONDS = (
    "response_timeout",
    "connect_timeout",
    "enquire_link_interval",
    "reconnect_min",
    "reconnect_max",
    "bind_failure_backoff",
    "unbind_timeout",
)
MAX_SECONDS = 86_400.0
MAX_TPS = 100_000.0  # per channel: far above what one SMSC account takes
# Per tenant: high enough that an operator can write "no practical limit" (1,000,000 is
# common in configs) while nan, inf and typos of many digits are refused.
MAX_TENANT_TPS = 10_000_000.0
MAX_VALIDITY = 63 * 86_400  # what SMPP's relative validity carries (submission.relative_validity)


def validate(cfg: Config, file: str | None = None) -> None:
    """The rules msgspec's types cannot say. Every number is checked against a finite range
    (a TOML `nan` or `inf` is a float too, and would pass a plain `> 0`)."""

    def bad(message: str, path: str) -> None:
        raise ConfigError(message, path, file)

    def number(value: float, path: str, lo: float, hi: float, *, lo_open: bool = False) -> None:
        error = _range_error(value, lo, hi, lo_open)
        if error:
            bad(error, path)

    _host_port(cfg.listeners.api, "$.listeners.api", file)
    _host_port(cfg.listeners.admin, "$.listeners.admin", file)
    number(cfg.listeners.max_body_bytes, "$.listeners.max_body_bytes", 1024, 1 << 30)
    number(cfg.store.batch_max, "$.store.batch_max", 1, 1_000_000)
    number(cfg.store.batch_wait_ms, "$.store.batch_wait_ms", 0, 1000)

    names: set[str] = set()
    for i, ch in enumerate(cfg.channels):
        p = f"$.channels[{i}]"
        if not _NAME.match(ch.name):
            bad("channel names are 1-64 of A-Z a-z 0-9 _ . -", f"{p}.name")
        if ch.name in names:
            bad(f"duplicate channel name {ch.name!r}", f"{p}.name")
        names.add(ch.name)
        number(ch.port, f"{p}.port", 1, 65535)
        number(ch.binds, f"{p}.binds", 1, 64)
        number(ch.window, f"{p}.window", 1, 1024)
        number(ch.tps, f"{p}.tps", 0, MAX_TPS, lo_open=True)
        if ch.burst is not None:
            number(ch.burst, f"{p}.burst", 1, MAX_TPS)
        for field in _CHANNEL_SECONDS:
            number(getattr(ch, field), f"{p}.{field}", 0, MAX_SECONDS, lo_open=True)
        if ch.reconnect_min > ch.reconnect_max:
            bad("must not exceed reconnect_max", f"{p}.reconnect_min")
        number(ch.deliver_batch_max, f"{p}.deliver_batch_max", 1, 65_536)
        number(ch.deliver_concurrency, f"{p}.deliver_concurrency", 1, 1024)
        for field in ("addr_ton", "addr_npi"):
            number(getattr(ch, field), f"{p}.{field}", 0, 255)
        if len(ch.system_id) > 15:
            bad("at most 15 characters (SMPP 3.4)", f"{p}.system_id")
        if len(ch.password) > 16:
            bad("at most 16 characters", f"{p}.password")
        number(ch.max_attempts, f"{p}.max_attempts", 1, 10_000)
        number(ch.validity_seconds, f"{p}.validity_seconds", 60, MAX_VALIDITY)
        if ch.source_addr is not None and not is_valid_sender(ch.source_addr):
            bad(SENDER_RULE, f"{p}.source_addr")
        for field in ("source_addr_ton", "source_addr_npi"):
            v = getattr(ch, field)
            if v is not None:
                number(v, f"{p}.{field}", 0, 255)

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
    hashes: dict[str, str] = {}
    for i, t in enumerate(cfg.tenants):
        p = f"$.tenants[{i}]"
        if not _NAME.match(t.id):
            bad("tenant ids are 1-64 of A-Z a-z 0-9 _ . -", f"{p}.id")
        if t.id in ids:
            bad(f"duplicate tenant id {t.id!r}", f"{p}.id")
        ids.add(t.id)
        if not is_key_hash(t.api_key_hash):
            bad("expected sha256:<64 hex digits> (use `smpp-gateway hash-key`)", f"{p}.api_key_hash")
        # The gateway finds a tenant by its key's hash: a second tenant with the same hash
        # would take over the first one's key (each tenant needs its own key).
        if t.api_key_hash in hashes:
            bad(
                f"same api_key_hash as tenant {hashes[t.api_key_hash]!r}: each tenant needs its own key",
                f"{p}.api_key_hash",
            )
        hashes[t.api_key_hash] = t.id
        number(t.tps, f"{p}.tps", 0, MAX_TENANT_TPS, lo_open=True)
        number(t.daily_quota, f"{p}.daily_quota", 0, 10**12)
        if t.default_source_addr is not None and not is_valid_sender(t.default_source_addr):
            bad(SENDER_RULE, f"{p}.default_source_addr")


def warnings(cfg: Config) -> list[str]:
    """What is valid but probably not meant: a gateway with no channel to send through or
    no tenant to accept a message from (an empty or truncated file, say)."""
    out = []
    if not any(c.enabled for c in cfg.channels):
        out.append("no enabled channel: no message can be sent")
    if not cfg.tenants:
        out.append("no tenant: every API call will be refused (401)")
    return out


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

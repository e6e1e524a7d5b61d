"""Simulator configuration: msgspec Structs for `config/simulator.toml`, loading, CLI overrides.

Every Struct forbids unknown keys, so a typo is an error, not a silently ignored setting.
Errors (`ConfigError`) always name the path of the offending value, e.g.
``Expected `float`, got `str` - at `$.accounts[0].receipts.delay.seconds```. Loading either
returns a complete, valid `Config` or raises: nothing is half-applied.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

STATS = ("DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED")
Stat = Literal["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED"]
BindType = Literal["transmitter", "receiver", "transceiver"]
IdFormat = Literal["hex", "decimal"]

Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
NonNegFloat = Annotated[float, Meta(ge=0.0)]
NonNegInt = Annotated[int, Meta(ge=0)]
Port = Annotated[int, Meta(ge=0, le=65535)]


class ConfigError(Exception):
    """An invalid configuration; the message names the path (`$.accounts[0].password`)."""


class _Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


# ---- receipt delay distributions (a tagged union on `kind`) ------------------------------


class FixedDelay(_Base, tag="fixed", tag_field="kind"):
    """Always `seconds` (0 = immediate: the receipt leaves in the same write as the resp)."""

    seconds: NonNegFloat = 0.0


class UniformDelay(_Base, tag="uniform", tag_field="kind"):
    min: NonNegFloat = 0.0
    max: NonNegFloat = 0.0

    def __post_init__(self) -> None:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")


class ExponentialDelay(_Base, tag="exponential", tag_field="kind"):
    mean: NonNegFloat = 1.0


Delay = FixedDelay | UniformDelay | ExponentialDelay


# ---- receipts ----------------------------------------------------------------------------


class Receipts(_Base):
    # "requested": honour registered_delivery (1 = always, 2 = on failure only, 0 = none);
    # "always" / "never" ignore it.
    when: Literal["requested", "always", "never"] = "requested"
    # Outcome weights (relative; need not sum to 1). Stats left out have weight 0.
    outcomes: dict[Stat, NonNegFloat] = msgspec.field(default_factory=lambda: {"DELIVRD": 1.0})
    # destination prefix -> stat, decided before the weights; the longest prefix wins. A
    # leading '+' on the destination is ignored.
    prefix_outcomes: dict[str, Stat] = {}
    delay: Delay = FixedDelay()
    # err: value per stat (3 digits in the text, network_error_code TLV value).
    error_codes: dict[Stat, NonNegInt] = {}
    # TLVs receipted_message_id + message_state (SMPP 3.4 receipts), network_error_code opt.
    tlvs: bool = True
    network_error_code: bool = False
    # The Appendix B text in short_message: id:... sub:001 dlvrd:... submit date:... etc.
    text: bool = True
    text_excerpt_length: Annotated[int, Meta(ge=0, le=60)] = 20
    date_with_seconds: bool = False  # YYMMDDhhmmss instead of YYMMDDhhmm

    def __post_init__(self) -> None:
        if sum(self.outcomes.values()) <= 0:
            raise ValueError("outcomes: at least one weight must be positive")
        for prefix in self.prefix_outcomes:
            if not prefix or not prefix.lstrip("+").isdigit():
                raise ValueError(f"prefix_outcomes: {prefix!r} is not a digit prefix")


# ---- fault personalities -----------------------------------------------------------------

NackStatus = Literal["ESME_RTHROTTLED", "ESME_RSYSERR", "ESME_RMSGQFUL"]


class Faults(_Base):
    """Misbehaviours applied to submit_sm (see docs/simulator.md). All off by default.

    Probabilities are the fraction of submit_sm affected (1.0 = every one), drawn from a
    random.Random(seed) per account, so a run is reproducible. Counts (`drop_after`,
    `unbind_on_submit`, `malformed_pdu`) are per connection.
    """

    seed: int = 0
    max_tps: NonNegInt = 0  # > 0: submits beyond N per second (per account) -> RTHROTTLED
    queue_full: Probability = 0.0  # -> ESME_RMSGQFUL
    drop_after: NonNegInt = 0  # answer N submits, then close the TCP connection
    never_answer: Probability = 0.0  # no submit_sm_resp at all
    slow_answer: NonNegFloat = 0.0  # delay the submit_sm_resp by this many seconds...
    slow_answer_fraction: Probability = 1.0  # ...for this fraction of submits
    generic_nack: Probability = 0.0  # answer with generic_nack(generic_nack_status)
    generic_nack_status: NackStatus = "ESME_RTHROTTLED"
    unbind_on_submit: NonNegInt = 0  # send unbind after N submits
    receipt_before_resp: Probability = 0.0  # receipt written before the submit_sm_resp
    duplicate_receipts: Probability = 0.0  # every affected receipt is sent twice
    malformed_pdu: NonNegInt = 0  # every Nth submit also gets a corrupt deliver_sm
    malformed_kind: Literal["missing_nul", "bad_length"] = "missing_nul"

    @property
    def active(self) -> bool:
        return any(
            (
                self.max_tps,
                self.queue_full,
                self.drop_after,
                self.never_answer,
                self.slow_answer,
                self.generic_nack,
                self.unbind_on_submit,
                self.receipt_before_resp,
                self.duplicate_receipts,
                self.malformed_pdu,
            )
        )


FAULT_NAMES = tuple(f for f in Faults.__struct_fields__ if f != "seed")


# ---- mobile originated -------------------------------------------------------------------

DEFAULT_MO_TEXTS = ("Hello", "TD", "T", "STOP", "UNSUBSCRIBE", "yes please")


class Mo(_Base):
    # seconds between generated MOs (0 = only on demand); sources, destinations and texts
    # are cycled through in order, each list on its own.
    interval: NonNegFloat = 0.0
    sources: list[str] = msgspec.field(default_factory=lambda: ["491700000001", "491700000002"])
    destinations: list[str] = msgspec.field(default_factory=lambda: ["12345"])
    texts: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_MO_TEXTS))

    def __post_init__(self) -> None:
        for name in ("sources", "destinations", "texts"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")


# ---- accounts, server, whole file ---------------------------------------------------------


class Account(_Base):
    system_id: Annotated[str, Meta(min_length=1, max_length=15)]
    password: Annotated[str, Meta(max_length=16)] = ""
    bind_types: list[BindType] = msgspec.field(
        default_factory=lambda: ["transmitter", "receiver", "transceiver"]
    )
    max_binds: NonNegInt = 0  # 0 = unlimited
    receipts: Receipts = Receipts()
    faults: Faults = Faults()
    mo: Mo = Mo()
    max_held_receipts: NonNegInt = 1_000_000  # receipts/MOs waiting for a receiver bind


class Server(_Base):
    host: str = "127.0.0.1"
    port: Port = 2775
    control_port: Port | None = None  # HTTP control API; 0 = ephemeral
    control_host: str = "127.0.0.1"
    system_id: Annotated[str, Meta(max_length=15)] = "SMSCSIM"
    message_id_format: IdFormat = "hex"
    message_id_width: Annotated[int, Meta(ge=0, le=64)] = 0  # zero-pad to this many chars
    message_id_start: Annotated[int, Meta(ge=1)] = 1
    enquire_link_interval: NonNegFloat = 30.0  # 0 = never send our own enquire_link
    response_timeout: Annotated[float, Meta(gt=0)] = 10.0  # for our deliver_sm/enquire_link
    window: Annotated[int, Meta(ge=1)] = 256  # outstanding deliver_sm per bind
    receipt_retries: NonNegInt = 3  # re-sends after a retryable status or a timeout
    receipt_retry_delay: NonNegFloat = 1.0
    max_tracked_messages: Annotated[int, Meta(ge=16)] = 131_072  # for query/cancel/replace
    max_scheduled_receipts: Annotated[int, Meta(ge=1)] = 1_000_000
    shutdown_timeout: NonNegFloat = 2.0  # wait for unbind_resp on shutdown
    record: str | None = None  # JSON-lines file of received submit_sm
    log_format: Literal["pretty", "json"] = "pretty"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    seed: int = 0  # outcome and delay draws


class Config(_Base):
    server: Server = Server()
    accounts: list[Account] = msgspec.field(
        default_factory=lambda: [Account(system_id="test", password="test")]
    )

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for i, a in enumerate(self.accounts):
            if a.system_id in seen:
                raise ValueError(
                    f"system_id {a.system_id!r} appears twice - at `$.accounts[{i}].system_id`"
                )
            seen.add(a.system_id)

    def account(self, system_id: str) -> Account | None:
        for a in self.accounts:
            if a.system_id == system_id:
                return a
        return None


# ---- loading -------------------------------------------------------------------------------


def _convert(data: Any, typ: Any, *, strict: bool = True) -> Any:
    try:
        return msgspec.convert(data, typ, strict=strict)
    except msgspec.ValidationError as e:
        raise ConfigError(str(e)) from None


def parse_config(text: str) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML: {e}") from None
    return _convert(data, Config)


def load_config(path: str | Path) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        return parse_config(text)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_faults(data: Any, *, base: Faults | None = None, strict: bool = True) -> Faults:
    """A Faults from a mapping (JSON body, CLI pairs), on top of `base` when given."""
    if not isinstance(data, dict):
        raise ConfigError("Expected `object` - at `$`")
    merged = msgspec.structs.asdict(base) if base is not None else {}
    merged.update(data)
    return _convert(merged, Faults, strict=strict)


def parse_fault_flags(flags: list[str], base: Faults) -> Faults:
    """`--fault name=value` pairs (values converted from strings) applied to `base`."""
    pairs: dict[str, str] = {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        if not sep:
            raise ConfigError(f"--fault {flag!r}: expected name=value")
        pairs[name.strip()] = value.strip()
    return parse_faults(pairs, base=base, strict=False)


def apply_overrides(
    cfg: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    id_format: str | None = None,
    id_width: int | None = None,
    account: str | None = None,
    faults: list[str] | None = None,
    control_port: int | None = None,
    record: str | None = None,
    log_format: str | None = None,
    log_level: str | None = None,
    enquire_link_interval: float | None = None,
) -> Config:
    """CLI flags on top of the file. Returns a new, validated Config (or raises ConfigError).

    `account` is "system_id:password": that account is added with all bind types, or, if the
    file has it, its password replaced. `faults` (name=value) apply to every account.
    """
    server = msgspec.structs.asdict(cfg.server)
    for key, value in (
        ("host", host),
        ("port", port),
        ("message_id_format", id_format),
        ("message_id_width", id_width),
        ("control_port", control_port),
        ("record", record),
        ("log_format", log_format),
        ("log_level", log_level),
        ("enquire_link_interval", enquire_link_interval),
    ):
        if value is not None:
            server[key] = value
    accounts = list(cfg.accounts)
    if account is not None:
        system_id, sep, password = account.partition(":")
        if not sep or not system_id:
            raise ConfigError(f"--account {account!r}: expected system_id:password")
        existing = cfg.account(system_id)
        if existing is not None:
            accounts = [
                msgspec.structs.replace(a, password=password) if a is existing else a
                for a in accounts
            ]
        else:
            accounts.insert(0, Account(system_id=system_id, password=password))
    if faults:
        try:
            accounts = [
                msgspec.structs.replace(a, faults=parse_fault_flags(faults, a.faults))
                for a in accounts
            ]
        except ConfigError as e:
            raise ConfigError(f"--fault: {e}") from None
    data = {"server": server, "accounts": [msgspec.to_builtins(a) for a in accounts]}
    return _convert(msgspec.to_builtins(data), Config)

"""Config files that used to pass validation and break later (a reload answered 500, a
daemon killed by SIGHUP, a channel stuck on a nan timeout, a tenant's key logging in as
another tenant)."""

from __future__ import annotations

import pytest

from gateway import config as C
from gateway.cli import main
from gateway.errors import ConfigError

CHANNEL = '[[channels]]\nname = "a"\nsystem_id = "gw"\npassword = "pw"\n'
ROUTE = '[[routes]]\nchannels = ["a"]\n'
H1, H2 = C.hash_api_key("k1"), C.hash_api_key("k2")
TENANT = f'[[tenants]]\nid = "t"\napi_key_hash = "{H1}"\n'
GOOD = CHANNEL + ROUTE + TENANT


def refused(text: str | bytes) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        C.parse(text, "x.toml")
    assert "x.toml" in str(e.value)
    return e.value


# ---- 1. not UTF-8 -----------------------------------------------------------------------


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    e = refused(GOOD.encode() + b"# caf\xe9\n")
    assert e.path == "$" and "not UTF-8" in e.reason and "line 10" in e.reason
    f = tmp_path / "gw.toml"
    f.write_bytes(b'[[tenants]]\nid = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not UTF-8") as e2:
        C.load(f)
    assert e2.value.file == str(f)


def test_check_config_on_a_non_utf8_file_prints_one_line(tmp_path, capsys):
    f = tmp_path / "gw.toml"
    f.write_bytes(GOOD.encode() + b"# \xe9\n")
    assert main(["check-config", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invalid: ") and "not UTF-8" in err and "Traceback" not in err


# ---- 2. numbers: finite and in range ----------------------------------------------------

CHANNEL_FLOATS = [
    "tps",
    "burst",
    "response_timeout",
    "connect_timeout",
    "enquire_link_interval",
    "reconnect_min",
    "reconnect_max",
    "bind_failure_backoff",
    "unbind_timeout",
]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("field", CHANNEL_FLOATS)
def test_channel_floats_must_be_finite(field, value):
    e = refused(CHANNEL + f"{field} = {value}\n")
    assert e.path == f"$.channels[0].{field}"


@pytest.mark.parametrize(
    "text,path",
    [
        (CHANNEL + "deliver_concurrency = 0\n", "$.channels[0].deliver_concurrency"),
        (CHANNEL + "deliver_concurrency = -3\n", "$.channels[0].deliver_concurrency"),
        (CHANNEL + "deliver_batch_max = 9223372036854775807\n", "$.channels[0].deliver_batch_max"),
        (CHANNEL + "max_attempts = 99999999999999999999\n", "$.channels[0].max_attempts"),
        (CHANNEL + "validity_seconds = 9223372036854775807\n", "$.channels[0].validity_seconds"),
        (CHANNEL + "response_timeout = 1e300\n", "$.channels[0].response_timeout"),
        (CHANNEL + "burst = 0.5\n", "$.channels[0].burst"),
        (CHANNEL + "source_addr_ton = 256\n", "$.channels[0].source_addr_ton"),
        ("[store]\nbatch_wait_ms = nan\n", "$.store.batch_wait_ms"),
        ("[store]\nbatch_max = 9223372036854775807\n", "$.store.batch_max"),
        ("[listeners]\nmax_body_bytes = 9223372036854775807\n", "$.listeners.max_body_bytes"),
        (TENANT + "tps = nan\n", "$.tenants[0].tps"),
        (TENANT + "tps = inf\n", "$.tenants[0].tps"),
        (TENANT + "daily_quota = 99999999999999999999\n", "$.tenants[0].daily_quota"),
    ],
)
def test_numbers_out_of_range_name_their_path(text, path):
    e = refused(text)
    assert e.path == path


def test_ordinary_numbers_still_pass():
    cfg = C.parse(
        CHANNEL
        + "tps = 0.5\nburst = 3\nresponse_timeout = 0.05\nreconnect_min = 0.05\n"
        + "deliver_concurrency = 1\nvalidity_seconds = 60\n"
        + ROUTE
        + TENANT
        + "tps = 10000\ndaily_quota = 0\n"
    )
    assert cfg.channels[0].deliver_concurrency == 1 and cfg.tenants[0].tps == 10000


# ---- 4. one key, one tenant ---------------------------------------------------------------


def test_two_tenants_with_the_same_key_hash_are_refused():
    e = refused(GOOD + f'[[tenants]]\nid = "u"\napi_key_hash = "{H1}"\n')
    assert e.path == "$.tenants[1].api_key_hash" and "'t'" in e.reason
    e = refused(GOOD + f'[[tenants]]\nid = "t"\napi_key_hash = "{H2}"\n')
    assert e.path == "$.tenants[1].id"
    C.parse(GOOD + f'[[tenants]]\nid = "u"\napi_key_hash = "{H2}"\n')


# ---- 5. senders the source_addr field can carry ------------------------------------------

BAD_SENDERS = ["a\\u0000b", "Gäteway€", "\\t", "a\\nb", "x" * 21, " Shop", "Shop ", "é"]
GOOD_SENDERS = ["Gateway", "+4915112345678", "My Shop", "x" * 20, "A-1_b.c"]


@pytest.mark.parametrize("sender", BAD_SENDERS)
def test_config_senders_must_be_sendable(sender):
    assert refused(TENANT + f'default_source_addr = "{sender}"\n').path == "$.tenants[0].default_source_addr"
    assert refused(CHANNEL + f'source_addr = "{sender}"\n').path == "$.channels[0].source_addr"


@pytest.mark.parametrize("sender", GOOD_SENDERS)
def test_config_senders_that_are_sendable_pass(sender):
    cfg = C.parse(CHANNEL + f'source_addr = "{sender}"\n' + ROUTE + TENANT + f'default_source_addr = "{sender}"\n')
    assert cfg.channels[0].source_addr == sender == cfg.tenants[0].default_source_addr

"""Config files that used to pass validation and break later (a reload answered 500, a
daemon killed by SIGHUP, a channel stuck on a nan timeout, a tenant's key logging in as
another tenant), and `smpp-gateway run|check-config` on such files and on startup errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from gateway import config as C
from gateway import daemon as D
from gateway.cli import main
from gateway.errors import ConfigError, GatewayError

ROOT = Path(__file__).resolve().parent.parent

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

# Listed here, not taken from config._CHANNEL_SECONDS: a field the validation forgets must
# fail this test, not drop out of it.
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


# ---- 3. no channel / no tenant ------------------------------------------------------------


def test_check_config_warns_about_a_gateway_that_cannot_send(tmp_path, capsys):
    f = tmp_path / "gw.toml"
    f.write_text('[listeners]\napi = "127.0.0.1:8080"\n[store]\npath = "x.db"\n')
    assert main(["check-config", str(f)]) == 0
    err = capsys.readouterr().err
    assert "warning: no enabled channel" in err and "warning: no tenant" in err
    f.write_text(GOOD)
    assert main(["check-config", str(f)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_reload_refusal_only_when_everything_would_stop():
    full = C.parse(GOOD)
    assert D.reload_refusal(full, full) is None
    assert D.reload_refusal(C.parse(""), C.parse("")) is None  # nothing running to stop
    e = D.reload_refusal(full, C.parse(""), "gw.toml")
    assert e is not None and "no channels/tenants" in e.reason and "restart" in e.reason
    e = D.reload_refusal(full, C.parse(CHANNEL + "enabled = false\n" + TENANT))
    assert e is not None and "no channels;" in e.reason
    e = D.reload_refusal(full, C.parse(CHANNEL + ROUTE))
    assert e is not None and "no tenants;" in e.reason
    # fewer channels or tenants is an ordinary reload
    two = C.parse(GOOD + CHANNEL.replace('"a"', '"b"') + f'[[tenants]]\nid = "u"\napi_key_hash = "{H2}"\n')
    assert D.reload_refusal(two, full) is None


# ---- 6. startup errors: one line, not a traceback --------------------------------------


class _StoreBroken(GatewayError):
    code = "store_broken"


def test_startup_errors_unwraps_nested_groups():
    e = _StoreBroken("the store is read-only")
    assert D.startup_errors(e) == [e]
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [e])])
    assert D.startup_errors(group) == [e]
    assert D.startup_errors(ExceptionGroup("mixed", [e, ValueError("bug")])) is None
    assert D.startup_errors(ValueError("bug")) is None


def _config_file(tmp_path):
    f = tmp_path / "gw.toml"
    # writer "process": run() changes the GIL switch interval for a thread writer only
    f.write_text(f'[store]\npath = "{tmp_path / "gw.db"}"\nwriter = "process"\n' + GOOD)
    return f


@pytest.fixture(autouse=True)
def _no_global_tuning(monkeypatch):
    """D.run() configures logging and the GC for the process: not in the test process."""
    monkeypatch.setattr(D.logs, "configure", lambda *a, **k: None)
    monkeypatch.setattr(D.gctune, "tune", lambda: None)


def test_run_prints_a_gateway_error_at_startup_as_one_line(tmp_path, monkeypatch, capsys):
    async def failing_run(self, *, task_status=trio.TASK_STATUS_IGNORED):
        async with trio.open_nursery() as n:  # as Gateway.run's nursery wraps it
            n.start_soon(trio.sleep_forever)
            raise _StoreBroken("cannot write the store file x.db: read-only")

    monkeypatch.setattr(D.Daemon, "run", failing_run)
    assert D.run(str(_config_file(tmp_path))) == 1
    err = capsys.readouterr().err
    assert err == "startup failed: cannot write the store file x.db: read-only (store_broken)\n"


def test_run_keeps_the_traceback_of_other_exceptions(tmp_path, monkeypatch):
    async def buggy_run(self, *, task_status=trio.TASK_STATUS_IGNORED):
        raise KeyError("bug")

    monkeypatch.setattr(D.Daemon, "run", buggy_run)
    with pytest.raises(KeyError):
        D.run(str(_config_file(tmp_path)))


def test_run_with_a_bad_config_prints_one_line(tmp_path, capsys):
    f = tmp_path / "gw.toml"
    f.write_bytes(b"# \xe9\n")
    assert D.run(str(f)) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: ") and "not UTF-8" in err and err.count("\n") == 1


def test_a_tenant_may_have_no_practical_rate_limit_but_not_an_absurd_one(tmp_path):
    base = (ROOT / "config" / "gateway.toml").read_text()
    head, sep, tenants = base.partition("[[tenants]]")
    ok = C.parse(head + sep + tenants.replace("tps = 200", "tps = 1000000", 1))
    assert any(t.tps == 1_000_000 for t in ok.tenants)
    with pytest.raises(C.ConfigError) as e:
        C.parse(head + sep + tenants.replace("tps = 200", "tps = 1e12", 1))
    assert e.value.path == "$.tenants[0].tps"


def test_the_benchmark_configs_are_valid(tmp_path):
    """bench/gateway_bench.py writes its own gateway config: it must pass validation (the
    benchmark is not run by the test suite)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gateway_bench
    finally:
        sys.path.remove(str(ROOT / "bench"))
    path = gateway_bench.gateway_config(tmp_path, 2775, 8080, 8081, 2, 64, "builtin")
    C.load(str(path))

"""Simulator configuration: the example file, errors with their path, CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.smsc.config import (
    Config,
    ConfigError,
    ExponentialDelay,
    Faults,
    UniformDelay,
    apply_overrides,
    load_config,
    parse_config,
    parse_fault_flags,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "simulator.toml"


def test_example_file_loads():
    cfg = load_config(EXAMPLE)
    assert [a.system_id for a in cfg.accounts] == ["test", "operator", "flaky"]
    test, operator, flaky = cfg.accounts
    assert test.receipts.prefix_outcomes["4900"] == "UNDELIV"
    assert isinstance(operator.receipts.delay, ExponentialDelay)
    assert isinstance(flaky.receipts.delay, UniformDelay)
    assert flaky.faults.active and not test.faults.active
    assert cfg.server.message_id_width == 8


def test_defaults_work_without_a_file():
    cfg = Config()
    assert (cfg.server.host, cfg.server.port, cfg.server.message_id_format) == (
        "127.0.0.1",
        2775,
        "hex",
    )
    assert cfg.accounts[0].system_id == "test"


@pytest.mark.parametrize(
    ("toml", "path"),
    [
        ('[server]\nport = "x"', "$.server.port"),
        ("[server]\nport = 70000", "$.server.port"),
        ("[server]\nbogus = 1", "`bogus` - at `$.server`"),
        ('[server]\nmessage_id_format = "octal"', "$.server.message_id_format"),
        ('[[accounts]]\nsystem_id = "a"\ncolour = "red"', "`colour` - at `$.accounts[0]`"),
        ('[[accounts]]\nsystem_id = "a"\nbind_types = ["sender"]', "$.accounts[0].bind_types[0]"),
        (
            '[[accounts]]\nsystem_id = "a"\n[accounts.receipts]\noutcomes = { FOO = 1 }',
            "$.accounts[0].receipts.outcomes",
        ),
        (
            '[[accounts]]\nsystem_id = "a"\n[accounts.receipts]\noutcomes = { DELIVRD = 0 }',
            "$.accounts[0].receipts",
        ),
        (
            '[[accounts]]\nsystem_id = "a"\n[accounts.receipts]\nprefix_outcomes = { "49" = "LOST" }',
            "$.accounts[0].receipts.prefix_outcomes",
        ),
        (
            '[[accounts]]\nsystem_id = "a"\n[accounts.receipts]\nprefix_outcomes = { "4x" = "UNDELIV" }',
            "$.accounts[0].receipts",
        ),
        (
            '[[accounts]]\nsystem_id = "a"\n[accounts.receipts.delay]\nkind = "uniform"\nmin = 3\nmax = 1',
            "$.accounts[0].receipts.delay",
        ),
        (
            '[[accounts]]\nsystem_id = "a"\n[accounts.receipts.delay]\nkind = "gamma"',
            "$.accounts[0].receipts.delay.kind",
        ),
        (
            '[[accounts]]\nsystem_id = "a"\n[accounts.faults]\nqueue_full = 1.5',
            "$.accounts[0].faults.queue_full",
        ),
        (
            '[[accounts]]\nsystem_id = "a"\n[accounts.faults]\nexplode = true',
            "`explode` - at `$.accounts[0].faults`",
        ),
        ('[[accounts]]\nsystem_id = "a"\n[accounts.mo]\ntexts = []', "$.accounts[0].mo"),
        ('[[accounts]]\nsystem_id = "a"\n[[accounts]]\nsystem_id = "a"', "$.accounts[1].system_id"),
        ('[[accounts]]\nsystem_id = ""', "$.accounts[0].system_id"),
        ('[[accounts]]\nsystem_id = "waytoolongsystemid"', "$.accounts[0].system_id"),
    ],
)
def test_errors_name_the_path(toml, path):
    with pytest.raises(ConfigError) as exc:
        parse_config(toml)
    assert path in str(exc.value)


def test_toml_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        parse_config("[server\nport=1")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = -1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: .*\$\.server\.port"):
        load_config(bad)


def test_cli_overrides():
    base = load_config(EXAMPLE)
    cfg = apply_overrides(
        base,
        port=0,
        id_format="decimal",
        id_width=0,
        control_port=0,
        account="cli:pw",
        faults=["max_tps=10", "queue_full=0.25"],
    )
    assert (cfg.server.port, cfg.server.message_id_format, cfg.server.control_port) == (
        0,
        "decimal",
        0,
    )
    assert cfg.accounts[0].system_id == "cli" and cfg.accounts[0].password == "pw"
    assert all(a.faults.max_tps == 10 and a.faults.queue_full == 0.25 for a in cfg.accounts)
    assert cfg.accounts[3].faults.seed == 7  # file values kept where not overridden
    # an existing account only gets its password replaced
    cfg = apply_overrides(base, account="operator:new")
    assert cfg.account("operator").password == "new"
    assert isinstance(cfg.account("operator").receipts.delay, ExponentialDelay)
    assert base.account("operator").password == "secret"  # the original is untouched


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"faults": ["queue_full=2"]}, "--fault: Expected `float` <= 1.0 - at `$.queue_full`"),
        ({"faults": ["nosuchfault=1"]}, "--fault: Object contains unknown field `nosuchfault`"),
        ({"faults": ["max_tps"]}, "expected name=value"),
        ({"account": "nopassword"}, "expected system_id:password"),
        ({"port": 99999}, "$.server.port"),
    ],
)
def test_bad_overrides_raise(kwargs, message):
    with pytest.raises(ConfigError) as exc:
        apply_overrides(Config(), **kwargs)
    assert message in str(exc.value)


def test_fault_flags_convert_strings():
    f = parse_fault_flags(
        ["slow_answer=1.5", "drop_after=3", "malformed_kind=bad_length"], Faults()
    )
    assert (f.slow_answer, f.drop_after, f.malformed_kind) == (1.5, 3, "bad_length")
    assert f.active and not Faults().active

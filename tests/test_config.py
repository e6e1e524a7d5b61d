"""Config: decode, validate with paths, diff for reload, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import config as C
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "gateway.toml"

CHANNEL = """
[[channels]]
name = "a"
system_id = "gw"
password = "pw"
"""


def test_example_config_is_valid():
    cfg = C.load(EXAMPLE)
    assert [c.name for c in cfg.channels] == ["sim-a", "sim-b"]
    assert C.key_matches("sk_demo_key_change_me", cfg.tenants[0].api_key_hash)


@pytest.mark.parametrize(
    "text,path",
    [
        (CHANNEL + 'tps = "fast"\n', "$.channels[0].tps"),
        (CHANNEL + "window = 0\n", "$.channels[0].window"),
        (CHANNEL + "reconnect_min = -1.0\n", "$.channels[0].reconnect_min"),
        (CHANNEL + "addr_ton = 300\n", "$.channels[0].addr_ton"),
        (CHANNEL + "bogus = 1\n", "$.channels[0]"),
        (CHANNEL + 'bind_mode = "sideways"\n', "$.channels[0].bind_mode"),
        (CHANNEL + CHANNEL, "$.channels[1].name"),
        (CHANNEL + '[[routes]]\nchannels = ["b"]\n', "$.routes[0].channels[0]"),
        (CHANNEL + '[[routes]]\nprefix = "4a"\nchannels = ["a"]\n', "$.routes[0].prefix"),
        ('[[tenants]]\nid = "t"\napi_key_hash = "plain"\n', "$.tenants[0].api_key_hash"),
        ('[listeners]\napi = "nowhere"\n', "$.listeners.api"),
        ("[store]\nbatch_max = 0\n", "$.store.batch_max"),
        ('[store]\nwriter = "fork"\n', "$.store.writer"),
        ("[store]\nwriters = 2\n", "$.store"),
        ("this is not toml", "$"),
    ],
)
def test_bad_values_name_their_path(text, path):
    with pytest.raises(ConfigError) as e:
        C.parse(text, "x.toml")
    assert e.value.path == path
    assert "x.toml" in str(e.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        C.load(tmp_path / "absent.toml")


def test_diff_classifies_channel_changes():
    old = C.parse(
        CHANNEL
        + '[[channels]]\nname = "b"\nsystem_id = "x"\npassword = "y"\n'
        + '[[channels]]\nname = "c"\nsystem_id = "x"\npassword = "y"\n'
    )
    new = C.parse(
        CHANNEL.replace('password = "pw"', 'password = "pw2"')  # a: credentials -> reconnect
        + '[[channels]]\nname = "b"\nsystem_id = "x"\npassword = "y"\ntps = 5\nwindow = 3\n'  # b: retune
        + '[[channels]]\nname = "d"\nsystem_id = "x"\npassword = "y"\n'  # c removed, d added
    )
    d = C.diff(old, new)
    assert d.reconnect == ("a",)
    assert d.retuned == ("b",)
    assert d.added == ("d",) and d.removed == ("c",)
    assert C.diff(new, new).empty


def test_masked_hides_secrets():
    cfg = C.load(EXAMPLE)
    data = C.masked(cfg)
    text = repr(data)
    assert "secret" not in text
    assert cfg.tenants[0].api_key_hash not in text


def test_api_keys_hash_and_compare():
    key = C.new_api_key()
    h = C.hash_api_key(key)
    assert C.is_key_hash(h) and C.key_matches(key, h)
    assert not C.key_matches(key + "x", h)


def test_disabling_a_channel_removes_it():
    old = C.parse(CHANNEL)
    new = C.parse(CHANNEL + "enabled = false\n")
    assert C.diff(old, new).removed == ("a",)
    assert C.diff(new, old).added == ("a",)


def test_check_config_prints_the_effective_burst(tmp_path, capsys):
    """check-config prints the bucket depth the throttle uses: `burst` when given, else
    max(1, tps / 10), never null."""
    import json

    from gateway.cli import main

    assert main(["check-config", str(EXAMPLE)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {c["name"]: c["burst"] for c in out["channels"]} == {"sim-a": 50.0, "sim-b": 10.0}
    assert all(c["password"] == "***" for c in out["channels"])

    f = tmp_path / "gw.toml"
    f.write_text(
        CHANNEL + "tps = 5\n"  # tps / 10 below 1: the depth is 1
        + '[[channels]]\nname = "b"\nsystem_id = "gw"\npassword = "pw"\ntps = 100\nburst = 30\n'
    )
    assert main(["check-config", str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["burst"] for c in out["channels"]] == [1.0, 30.0]
    cfg = C.load(f)
    assert [c.bucket_depth for c in cfg.channels] == [1.0, 30.0]  # what the channels use

"""Log lines: phone numbers masked, secrets never written, in every event."""

from __future__ import annotations

import io
import json

import structlog

from gateway import logs


def capture(**event) -> dict:
    out = io.StringIO()
    saved = structlog.get_config()
    logs.configure("json", "debug", stream=out)
    try:
        logs.get_logger("t").info("something", **event)
    finally:
        structlog.configure(**saved)
    return json.loads(out.getvalue())


def test_address_keys_masked_to_last_three_digits():
    e = capture(to="+4915112345678", source_addr="Acme", destination="12345")
    assert e["to"] == "+**********678" and e["source_addr"] == "Acme" and e["destination"] == "**345"


def test_numbers_inside_free_text_are_masked():
    e = capture(error="invalid destination 4915112345678 for tenant acme", recipients=["4917012345678", 3])
    assert "4915112345678" not in e["error"] and e["error"].endswith("****678 for tenant acme")
    assert e["recipients"] == ["**********678", 3]


def test_message_ids_stay_readable():
    mid = "01a217110845d43be358dd6b1d03"
    assert capture(msg_id=mid)["msg_id"] == mid


def test_secrets_never_written():
    e = capture(password="hunter2", api_key="sk_live_x", authorization="Bearer sk_x")
    assert e["password"] == e["api_key"] == e["authorization"] == "***"


def test_printed_config_carries_no_password_or_key():
    """The config masks secrets when printed (check-config) as well."""
    from gateway import config as C

    from pathlib import Path

    text = C.masked(C.load(Path(__file__).resolve().parents[1] / "config" / "gateway.toml"))
    dumped = json.dumps(text)
    assert "secret" not in dumped and "sk_demo_key" not in dumped

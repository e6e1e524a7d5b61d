"""A reload never takes the running gateway down: a file that is not UTF-8, a file that
would stop every channel and tenant (empty, truncated), a failure while applying. Each is
refused or logged, over the admin API and on SIGHUP, and the daemon keeps serving with its
running config."""

from __future__ import annotations

import os
import signal

import pytest
import structlog
import trio

from gateway.daemon import Daemon
from tests.gateway_helpers import accept_with_receipt, wait_until
from tests.scripted_smsc import ScriptedSmsc
from tests.test_daemon import free_port, http, write_config


@pytest.fixture
async def running(nursery, tmp_path):
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    smsc.on_submit = accept_with_receipt()
    api, admin = free_port(), free_port()
    path = tmp_path / "gateway.toml"
    write_config(path, tmp_path / "gw.db", [("a", port)], api, admin)
    daemon = Daemon(path)
    await nursery.start(daemon.run)
    await wait_until(lambda: daemon.gateway.channels["a"].up)
    yield daemon, path, f"http://127.0.0.1:{api}", f"http://127.0.0.1:{admin}", tmp_path
    daemon.stop()
    with trio.fail_after(10):
        await daemon.stopped.wait()


async def still_serving(daemon, before, api) -> None:
    assert not daemon.stopped.is_set()
    assert daemon.cfg is before
    assert "a" in daemon.gateway.channels and daemon.gateway.channels["a"].up
    status, body = await trio.to_thread.run_sync(http, "POST", f"{api}/v1/messages", {"to": "4915112345678", "text": "hi"})
    assert status == 202, body


async def sighup() -> None:
    os.kill(os.getpid(), signal.SIGHUP)
    await trio.sleep(0.3)


async def test_reload_of_a_non_utf8_file_is_refused(running):
    daemon, path, api, admin, _ = running
    before = daemon.cfg
    path.write_bytes(path.read_bytes() + b"\n# caf\xe9\n")
    status, err = await trio.to_thread.run_sync(http, "POST", f"{admin}/admin/reload", None, None)
    assert status == 400 and err["error"]["code"] == "invalid_config"
    assert "not UTF-8" in err["error"]["message"]
    await sighup()
    await still_serving(daemon, before, api)


@pytest.mark.parametrize("content", ["", "truncated"])
async def test_reload_into_no_channels_and_no_tenants_is_refused(running, content):
    daemon, path, api, admin, _ = running
    before = daemon.cfg
    if content == "truncated":  # what is left of the file after [listeners] and [store]
        content = path.read_text().split("[[channels]]")[0]
    path.write_text(content)
    status, err = await trio.to_thread.run_sync(http, "POST", f"{admin}/admin/reload", None, None)
    if content == "":  # refused already: its listeners/store (defaults) differ from the running ones
        assert status == 400 and "restart" in err["error"]["message"]
    else:
        assert status == 400 and "no channels/tenants; refusing to stop everything" in err["error"]["message"]
    await sighup()
    await still_serving(daemon, before, api)


async def test_a_failure_while_applying_is_logged_and_the_daemon_keeps_running(running, monkeypatch):
    daemon, path, api, admin, _ = running
    before = daemon.cfg
    path.write_text(path.read_text().replace("tps = 10000", "tps = 500", 1))

    async def broken(new):
        raise RuntimeError("boom")

    monkeypatch.setattr(daemon.gateway, "apply_config", broken)
    with structlog.testing.capture_logs() as logged:
        status, err = await trio.to_thread.run_sync(http, "POST", f"{admin}/admin/reload", None, None)
        await sighup()
    assert status == 500 and err["error"]["code"] == "reload_failed"
    assert "RuntimeError: boom" in err["error"]["message"]
    failed = [e for e in logged if e["event"] == "reload_failed"]
    assert len(failed) == 2 and failed[0]["error"] == "RuntimeError: boom"
    await still_serving(daemon, before, api)
    # and the next reload, once applying works again, goes through
    monkeypatch.undo()
    status, body = await trio.to_thread.run_sync(http, "POST", f"{admin}/admin/reload", None, None)
    assert status == 200 and body["applied"]["tenants_changed"]
    assert daemon.cfg.tenants[0].tps == 500

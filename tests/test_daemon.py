"""The daemon end to end: real HTTP (hypercorn) on 127.0.0.1, SIGHUP reload, SIGTERM drain."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.error
import urllib.request

import pytest
import trio

from gateway.daemon import Daemon
from tests.gateway_helpers import API_KEY, accept_with_receipt, gateway_config_text, wait_until
from tests.scripted_smsc import ScriptedSmsc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, key: str | None = API_KEY) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(url, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def write_config(
    path, db, channels, api, admin, extra_channel_kw=None, server="builtin", writer="thread"
):
    listeners = (
        f'[listeners]\napi = "127.0.0.1:{api}"\nadmin = "127.0.0.1:{admin}"\nserver = "{server}"\n'
    )
    store = f'writer = "{writer}"\n'
    path.write_text(
        gateway_config_text(db, channels, listeners=listeners, store=store, **(extra_channel_kw or {}))
    )


@pytest.fixture(
    params=[("builtin", "thread"), ("hypercorn", "thread"), ("builtin", "process")],
    ids=["builtin", "hypercorn", "builtin-writer-process"],
)
async def running(nursery, tmp_path, request):
    server, writer = request.param
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    smsc.on_submit = accept_with_receipt()
    api, admin = free_port(), free_port()
    path = tmp_path / "gateway.toml"
    write_config(path, tmp_path / "gw.db", [("a", port)], api, admin, server=server, writer=writer)
    daemon = Daemon(path)
    await nursery.start(daemon.run)
    await wait_until(lambda: daemon.gateway.channels["a"].up)
    return daemon, path, smsc, port, f"http://127.0.0.1:{api}", f"http://127.0.0.1:{admin}", tmp_path


async def test_http_send_and_stats(running):
    daemon, path, smsc, port, api, admin, _ = running
    status, body = await trio.to_thread.run_sync(
        http, "POST", f"{api}/v1/messages", {"to": "4915112345678", "text": "hello"}
    )
    assert status == 202
    mid = body["messages"][0]["id"]
    for _ in range(200):
        status, view = await trio.to_thread.run_sync(http, "GET", f"{api}/v1/messages/{mid}")
        if view["state"] == "delivered":
            break
        await trio.sleep(0.02)
    assert view["state"] == "delivered"
    status, stats = await trio.to_thread.run_sync(http, "GET", f"{admin}/admin/stats", None, None)
    assert status == 200 and stats["channels"][0]["receipts_matched"] == 1
    assert stats["store"]["finished"] == {"delivered": 1}
    assert sum(stats["messages_open"].values()) == 0
    status, store = await trio.to_thread.run_sync(http, "GET", f"{admin}/admin/stats/store", None, None)
    assert status == 200 and store["finished"] == {"delivered": 1} and store["messages_inserted"] == 1
    # the writer process runs iff the config asks for it
    assert (daemon.gateway.store.writer_pid is not None) == (daemon.cfg.store.writer == "process")
    status, ready = await trio.to_thread.run_sync(http, "GET", f"{admin}/readyz", None, None)
    assert status == 200 and ready["ready"]
    daemon.stop()
    with trio.fail_after(10):
        await daemon.stopped.wait()


async def test_sighup_with_bad_file_changes_nothing(running):
    daemon, path, smsc, port, api, admin, _ = running
    before = daemon.cfg
    good = path.read_bytes()
    path.write_bytes(good + b'\n[logging]\nlevel = "loud"\n')
    os.kill(os.getpid(), signal.SIGHUP)
    await trio.sleep(0.3)
    assert daemon.cfg is before and daemon.gateway.cfg is before
    assert daemon.gateway.channels["a"].up
    status, err = await trio.to_thread.run_sync(http, "POST", f"{admin}/admin/reload", None, None)
    assert status == 400 and "$.logging.level" in err["error"]["message"]
    daemon.stop()
    with trio.fail_after(10):
        await daemon.stopped.wait()


async def test_sighup_adds_a_channel_and_retunes_tps_without_touching_binds(running, nursery):
    daemon, path, smsc, port, api, admin, tmp_path = running
    smsc_b = ScriptedSmsc()
    port_b = await nursery.start(smsc_b.serve)
    api_port, admin_port = api.rsplit(":", 1)[1], admin.rsplit(":", 1)[1]
    server, writer = daemon.cfg.listeners.server, daemon.cfg.store.writer
    write_config(path, tmp_path / "gw.db", [("a", port), ("b", port_b)], api_port, admin_port, {"tps": 250.0}, server, writer)
    binds_before = smsc.binds
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_until(lambda: "b" in daemon.gateway.channels and daemon.gateway.channels["b"].up)
    a = daemon.gateway.channels["a"]
    assert a.cfg.tps == 250.0 and a.rate.configured_rate == 250.0
    assert smsc.binds == binds_before  # channel a was retuned in place, not reconnected
    # remove b again
    write_config(path, tmp_path / "gw.db", [("a", port)], api_port, admin_port, {"tps": 250.0}, server, writer)
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_until(lambda: "b" not in daemon.gateway.channels)
    await wait_until(lambda: smsc_b.unbinds == 1)
    daemon.stop()
    with trio.fail_after(10):
        await daemon.stopped.wait()


async def test_sigterm_drains_and_unbinds(running):
    daemon, path, smsc, port, api, admin, _ = running
    os.kill(os.getpid(), signal.SIGTERM)
    with trio.fail_after(10):
        await daemon.stopped.wait()  # drained and closed on its own, not by the test's teardown
    assert smsc.unbinds == 1
